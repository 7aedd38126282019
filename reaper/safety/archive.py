"""Archive before delete: every row a run deletes is kept, written before the delete commits.

A batch is deleted with ``DELETE ... RETURNING *`` (PostgreSQL, SQLite, MariaDB 10.5+) or, where the
database has no RETURNING (MySQL), ``SELECT ... FOR UPDATE`` then ``DELETE`` of the locked rows, so
the rows in hand are exactly the rows deleted. They are written to the archive inside the same
transaction, before it commits:

- ``jsonl``: one gzip member per batch appended to ``<dir>/<table>-<run time>.jsonl.gz`` (the table's
  name in a form safe for a file name, see ``filenames``; one JSON object per row, column names as
  keys, each value in its exact form: values.py), fsync'ed before the commit. A process killed at
  any moment leaves at most a partial last member, whose rows were not deleted; its header names
  them (jsonl.py), so a restore can check that and skip it.
- ``table``: an INSERT into ``<table>_archive`` in the same transaction as the DELETE.

So a row may be archived and not deleted (the commit did not happen), never the other way round.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Column, DateTime, Integer, MetaData, Table, insert, inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.types import NullType, TypeEngine, UserDefinedType

from reaper.database.dialects import dialect_of
from reaper.database.filenames import file_safe
from reaper.database.schema import column_names
from reaper.database.values import exact_type, to_json
from reaper.errors import ArchiveError, ConfigError
from reaper.safety.jsonl import gzip_member

ARCHIVE_MODES = ("none", "jsonl", "table")


class Archive(Protocol):
    """Where deleted rows go, written inside the deleting transaction."""

    location: str

    def write(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Keep ``rows`` durably before the caller commits their delete."""


class JsonlArchive:
    """Gzip-compressed JSON Lines, one gzip member per batch, fsync'ed before the delete commits."""

    def __init__(self, directory: Path, source: Table, started: datetime, *, id_column: str) -> None:
        self.source, self.id_column = source, id_column
        table = source.name
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the archive directory {str(directory)!r} (REAPER_ARCHIVE_DIR): {exc.strerror}"
            ) from None
        # The table's name only in a safe form: '../escape' or 'jobs/eu' would leave the directory.
        path = directory / f"{file_safe(table)}-{started:%Y%m%dT%H%M%S%fZ}.jsonl.gz"
        self.path = path
        self.location = str(path)

    def write(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append one gzip member holding ``rows`` and make it durable."""
        if not rows:
            return
        exact = {column.name: exact_type(column.type, conn.dialect.name) for column in self.source.columns}
        encoded = [{key: to_json(value, exact[key]) for key, value in row.items()} for row in rows]
        lines = "".join(json.dumps(row) + "\n" for row in encoded)
        member = gzip_member(lines.encode("utf-8"), [row[self.id_column] for row in encoded])
        try:
            _append(self.path, member)
        except OSError as exc:
            raise ArchiveError(
                f"cannot write the archive {str(self.path)!r}: {exc.strerror or exc}; the batch in hand was not deleted"
            ) from None


def _append(path: Path, member: bytes) -> None:
    """Append ``member`` to ``path`` durably; on failure (a full disk) take back what was written of it,
    so that a member cut short can only be a killed run's. Unbuffered: nothing is left to write later."""
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(descriptor).st_size
        try:
            rest = memoryview(member)
            while rest:
                rest = rest[os.write(descriptor, rest) :]
            os.fsync(descriptor)
        except OSError:
            with contextlib.suppress(OSError):  # a file that cannot even be truncated keeps its partial member
                os.ftruncate(descriptor, size)
            raise
    finally:
        os.close(descriptor)


class TableArchive:
    """An archive table beside the task table, filled in the deleting transaction."""

    def __init__(self, engine: Engine, source: Table, name: str, started: datetime) -> None:
        self.table = _archive_table(source, name, _declared_types(engine, source))
        # Rows come read through the task table's exact types, and go in through the same ones.
        exact = [Column(column.name, exact_type(column.type, engine.dialect.name)) for column in source.columns]
        self.writer = Table(name, MetaData(), *exact, Column("reaper_archived_at", DateTime()))
        self.archived_at = started.replace(tzinfo=None)  # naive UTC, like the DateTime column
        self.location = f"table {name}"
        if not inspect(engine).has_table(name, schema=source.schema):
            self.table.create(engine)
        else:
            existing = column_names(engine, name, source.schema)
            missing = [column.name for column in self.table.columns if column.name not in existing]
            if missing:
                raise ConfigError(f"archive table {name!r} lacks columns {', '.join(missing)} (REAPER_ARCHIVE_TABLE)")

    def write(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert ``rows`` into the archive table, in the caller's transaction."""
        if rows:
            conn.execute(insert(self.writer), [{**row, "reaper_archived_at": self.archived_at} for row in rows])


class _Declared(UserDefinedType[Any]):
    """A column type SQLAlchemy does not know (PostgreSQL's point, MariaDB's INET6), by its declared name."""

    cache_ok = True

    def __init__(self, declared: str) -> None:
        self.declared = declared

    def get_col_spec(self, **kw: Any) -> str:
        """The type as the database declared it."""
        return self.declared


def _declared_types(engine: Engine, source: Table) -> dict[str, str]:
    """The declared types of the columns SQLAlchemy did not recognise, which it cannot create as they are."""
    if not any(isinstance(column.type, NullType) for column in source.columns):
        return {}
    with engine.connect() as conn:
        return dialect_of(engine).declared_types(conn, source.name)


def _archive_table(source: Table, name: str, declared: Mapping[str, str]) -> Table:
    # The same columns without keys or constraints (a row deleted, restored and deleted again is
    # archived twice), plus a key of its own and the time of archiving.
    columns: list[Column[Any]] = [Column("reaper_archive_id", Integer, primary_key=True, autoincrement=True)]
    for column in source.columns:
        unknown = isinstance(column.type, NullType)
        column_type: TypeEngine[Any] = _Declared(declared[column.name]) if unknown else column.type
        columns.append(Column(column.name, column_type, nullable=True))
    columns.append(Column("reaper_archived_at", DateTime(), nullable=True))
    return Table(name, MetaData(), *columns, schema=source.schema)  # beside the task table, in its schema


def open_archive(mode: str, directory: Path, table_name: str | None, source: Table, engine: Engine,
                 started: datetime, id_column: str) -> Archive | None:
    """Return the archive a run writes deleted rows to, or ``None`` when archiving is off."""
    if mode == "jsonl":
        return JsonlArchive(directory, source, started, id_column=id_column)
    if mode == "table":
        return TableArchive(engine, source, table_name or f"{source.name}_archive", started)
    return None
