"""A table's schema as the database reports it now: its indexes and its columns' names.

Read through SQLAlchemy's inspector, without its warning for a column type it does not know
(PostgreSQL's point, MariaDB's INET6): only names are read here, and the reflected table reads such a
column as text (see ``values``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import inspect
from sqlalchemy.engine import Engine, Inspector
from sqlalchemy.exc import SAWarning


@dataclass(frozen=True)
class ExistingIndex:
    """An index (or unique constraint, or the primary key) the table has, by its column names."""

    name: str
    columns: tuple[str, ...]


@contextmanager
def unknown_types_quiet() -> Iterator[None]:
    """Reflect without SQLAlchemy's warning for a column type it does not know."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Did not recognize type", SAWarning)
        yield


def reflected_indexes(inspector: Inspector, table: str, schema: str | None) -> list[ExistingIndex]:
    """The indexes, unique constraints and primary key of ``table``, as SQLAlchemy's ``inspector`` reads them."""
    with unknown_types_quiet():
        # An expression in an index has no column name (None): "" never equals a column's name.
        found = [
            ExistingIndex(str(index["name"]), tuple(name or "" for name in index["column_names"]))
            for index in inspector.get_indexes(table, schema=schema)
        ]
        found += [
            ExistingIndex(str(unique["name"]), tuple(unique["column_names"]))
            for unique in inspector.get_unique_constraints(table, schema=schema)
        ]
        key = inspector.get_pk_constraint(table, schema=schema)
    found.append(ExistingIndex(str(key.get("name") or "PRIMARY"), tuple(key["constrained_columns"])))
    return found


def column_names(engine: Engine, table: str, schema: str | None) -> set[str]:
    """The names of ``table``'s columns."""
    with unknown_types_quiet():
        return {column["name"] for column in inspect(engine).get_columns(table, schema=schema)}
