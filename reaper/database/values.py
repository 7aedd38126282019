"""Column values read and written exactly, and their JSON form: what archives and restores go through.

SQLAlchemy's reflected types convert some values on the way in or out, and some conversions lose
what the database holds: MySQL's ``DOUBLE`` is reflected as a decimal cut to 10 places, a JSON
document is parsed and dumped again (``2.50`` comes back ``2.5``), PostgreSQL's ``interval`` counts
a month as 30 days, MySQL's ``TIME`` cannot go past 24 hours, SQLite's text is parsed as dates and
numbers. So an archive reads each column through its *exact type*:

- values the driver gives back unchanged (integers, text, booleans, decimals, date-times, bytes,
  UUIDs) keep the reflected type; floats are read as floats;
- any other type is read as the database's own text for the value (``CAST(... AS TEXT)``) and
  written back as that text, untyped, for the database to parse into the column's type: the text
  form of a value is what the database itself reads back to the same value;
- a type SQLAlchemy does not know is read as hex on MySQL (geometry has no text form there);
- on SQLite every column is read as stored (SQLite keeps no other types than these).

The types that read so are in ``exact_types``; each database's own rules, in its dialect's ``exact_type``.

``to_json`` and ``from_json`` turn a value read so into JSON and back, given its exact type.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import uuid
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, Column, Date, DateTime, Float, Integer, MetaData, Numeric, String, Table, type_coerce
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import JSON, TypeEngine, Uuid

from reaper.database.dialects import dialect_of
from reaper.database.exact_types import BINARY_TYPES, AsText, Stored

# Types whose values the drivers give back unchanged and whose JSON form (below) is exact.
NATIVE_TYPES = (Integer, Boolean, Numeric, String, Date, DateTime, Uuid, *BINARY_TYPES)
# A raw SQLite value that is bytes, where the column's type does not say so.
BYTES_KEY = "base64"
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def exact_type(column_type: TypeEngine[Any], dialect: str) -> TypeEngine[Any]:
    """The type that reads and writes a column of ``column_type`` on ``dialect`` (SQLAlchemy's name for the
    backend) without changing its values: the database's own answer (see its dialect), else the plain rule."""
    own = dialect_of(dialect).exact_type(column_type)
    if own is not None:
        return own
    if isinstance(column_type, Float):  # before Numeric, its base: MySQL's DOUBLE is reflected as a decimal
        return Float(asdecimal=False)
    if isinstance(column_type, NATIVE_TYPES) and not isinstance(column_type, JSON):
        return column_type
    return AsText()


def exact_columns(table: Table, dialect: str) -> list[ColumnElement[Any]]:
    """Every column of ``table`` to read in a SELECT or RETURNING list, each through its exact type."""
    return [type_coerce(column, exact_type(column.type, dialect)).label(column.name) for column in table.columns]


def exact_table(table: Table, dialect: str) -> Table:
    """A copy of ``table`` whose columns have their exact types, to INSERT values read through them."""
    columns = [Column(column.name, exact_type(column.type, dialect)) for column in table.columns]
    return Table(table.name, MetaData(), *columns, schema=table.schema)


def to_json(value: Any, exact: TypeEngine[Any]) -> Any:
    """A value read through ``exact`` as JSON; ``from_json`` gives it back unchanged."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, bytes | bytearray | memoryview):
        text = base64.b64encode(bytes(value)).decode("ascii")
        return {BYTES_KEY: text} if isinstance(exact, Stored) else text
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"a value of type {type(value).__name__} has no JSON form")


def from_json(value: Any, exact: TypeEngine[Any]) -> Any:
    """A JSON value back into what a column of exact type ``exact`` is written with; ``ValueError`` if it cannot be."""
    if value is None:
        return None
    if isinstance(exact, AsText | Stored):
        return _text(value, exact)
    expected = _python_type(exact)
    decode = next((decode for base, decode in DECODERS if expected is not None and issubclass(expected, base)), None)
    if decode is not None:
        return decode(value)
    if expected is None:  # a type that says nothing of its values (MySQL's BIT): the driver takes the JSON value
        return value
    if isinstance(value, bool) and expected is not bool:
        raise ValueError(f"expected {expected.__name__}, got {value!r}")
    return _plain(value, (expected,))


def _text(value: Any, exact: TypeEngine[Any]) -> Any:
    """A value of a column read as text, or as stored on SQLite."""
    if isinstance(value, dict):
        if isinstance(exact, Stored) and set(value) == {BYTES_KEY}:
            return _bytes(value[BYTES_KEY])
        return json.dumps(value)  # a JSON document, as archives written before reaper kept its text held it
    return value  # text, or a number or a list from an earlier archive: the driver passes it on


def _python_type(exact: TypeEngine[Any]) -> type[Any] | None:
    try:
        return exact.python_type
    except NotImplementedError:
        return None


def _plain(value: Any, accepted: tuple[type[Any], ...]) -> Any:
    if isinstance(value, accepted):
        return value
    raise ValueError(f"expected {' or '.join(option.__name__ for option in accepted)}, got {value!r}")


def _float(value: Any) -> float:
    if isinstance(value, str) and value in NON_FINITE:
        return NON_FINITE[value]
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return float(_plain(value, (int, float, str)))  # text: a decimal from an archive of an earlier version


def _bytes(value: Any) -> bytes:
    try:
        return base64.b64decode(_plain(value, (str,)), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from None


# By base class, datetime before date (its base): a class may be a subclass (freezegun's FakeDatetime).
DECODERS: tuple[tuple[type[Any], Callable[[Any], Any]], ...] = (
    (float, _float),
    (datetime, lambda value: datetime.fromisoformat(_plain(value, (str,)))),
    (date, lambda value: date.fromisoformat(_plain(value, (str,)))),
    (Decimal, lambda value: Decimal(_plain(value, (str, int, float)))),
    (bytes, _bytes),
    (uuid.UUID, lambda value: uuid.UUID(_plain(value, (str,)))),
)
