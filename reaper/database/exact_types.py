"""The column types that read and write a value exactly as the database holds it (see ``values``).

Kept apart from ``values`` so that each database's dialect can pick among them without importing it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Text, cast, func
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import BINARY, VARBINARY, LargeBinary, NullType, TypeDecorator, TypeEngine

BINARY_TYPES: tuple[type[TypeEngine[Any]], ...] = (LargeBinary, BINARY, VARBINARY)


class AsText(TypeDecorator[str]):
    """A column read as the database's text for its value, and written back as that text (untyped)."""

    impl = NullType  # no bind processing, no cast: the database parses the text into the column's type
    cache_ok = True

    @property
    def python_type(self) -> type[Any]:
        """What a value read through this type is."""
        return str

    def column_expression(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        """Read the value as text."""
        return cast(column, Text())


class AsHex(TypeDecorator[str]):
    """A MySQL column of a type SQLAlchemy does not know (geometry): read as hex, written from it."""

    impl = NullType
    cache_ok = True

    @property
    def python_type(self) -> type[Any]:
        """What a value read through this type is."""
        return str

    def column_expression(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        """Read the value's bytes as hex."""
        return func.hex(column)

    def bind_expression(self, value: Any) -> Any:
        """Write the bytes the hex spells."""
        return func.unhex(value)


class Stored(TypeDecorator[Any]):
    """A SQLite column read and written as stored: text, integer, real, blob or null."""

    impl = NullType
    cache_ok = True
