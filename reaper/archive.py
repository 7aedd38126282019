"""Archive before delete: every row a run deletes is kept, written before the delete commits.

A batch is deleted with ``DELETE ... RETURNING *`` (PostgreSQL, SQLite, MariaDB 10.5+) or, where the
database has no RETURNING (MySQL), ``SELECT ... FOR UPDATE`` then ``DELETE`` of the locked rows, so
the rows in hand are exactly the rows deleted. They are written to the archive inside the same
transaction, before it commits:

- ``jsonl``: one gzip member per batch appended to ``<dir>/<table>-<run time>.jsonl.gz`` (the table's
  name in a form safe for a file name, see ``filenames``; one JSON object per row, column names as
  keys), flushed and fsync'ed before the commit. A process killed at any moment leaves at most a
  partial last member, whose rows were not deleted; readers skip it.
- ``table``: an INSERT into ``<table>_archive`` in the same transaction as the DELETE.

So a row may be archived and not deleted (the commit did not happen), never the other way round.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import zlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Column, DateTime, Integer, MetaData, Table, insert, inspect
from sqlalchemy.engine import Connection, Engine

from reaper.errors import ConfigError
from reaper.filenames import file_safe

ARCHIVE_MODES = ("none", "jsonl", "table")


class Archive(Protocol):
    """Where deleted rows go, written inside the deleting transaction."""

    location: str

    def write(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Keep ``rows`` durably before the caller commits their delete."""


def to_json(value: Any) -> Any:
    """A column value as JSON; ``from_json`` with the column's type gives it back unchanged."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def from_json(value: Any, column: Column[Any]) -> Any:
    """A JSON value back into what ``column`` stores."""
    if value is None:
        return None
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return value
    if python_type is datetime:
        return datetime.fromisoformat(value)
    if python_type is date:
        return date.fromisoformat(value)
    if python_type is time:
        return time.fromisoformat(value)
    if python_type is Decimal:
        return Decimal(value)
    if python_type is bytes:
        return base64.b64decode(value)
    return value


class JsonlArchive:
    """Gzip-compressed JSON Lines, one gzip member per batch, fsync'ed before the delete commits."""

    def __init__(self, directory: Path, table: str, started: datetime) -> None:
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
        lines = "".join(json.dumps({key: to_json(value) for key, value in row.items()}) + "\n" for row in rows)
        with open(self.path, "ab") as handle:
            handle.write(gzip.compress(lines.encode("utf-8")))
            handle.flush()
            os.fsync(handle.fileno())


def read_jsonl_archive(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the rows of an archive file, member by member; a partial last member is skipped."""
    data = path.read_bytes()
    while data:
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            text = decompressor.decompress(data) + decompressor.flush()
        except zlib.error:
            return  # a member cut short by a killed process: its rows were never deleted
        if not decompressor.eof:
            return
        for line in io.StringIO(text.decode("utf-8")):
            if line.strip():
                yield json.loads(line)
        data = decompressor.unused_data


class TableArchive:
    """An archive table beside the task table, filled in the deleting transaction."""

    def __init__(self, engine: Engine, source: Table, name: str, started: datetime) -> None:
        self.table = _archive_table(source, name)
        self.archived_at = started.replace(tzinfo=None)  # naive UTC, like the DateTime column
        self.location = f"table {name}"
        if not inspect(engine).has_table(name, schema=source.schema):
            self.table.create(engine)
        else:
            existing = {column["name"] for column in inspect(engine).get_columns(name, schema=source.schema)}
            missing = [column.name for column in self.table.columns if column.name not in existing]
            if missing:
                raise ConfigError(f"archive table {name!r} lacks columns {', '.join(missing)} (REAPER_ARCHIVE_TABLE)")

    def write(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert ``rows`` into the archive table, in the caller's transaction."""
        if rows:
            conn.execute(insert(self.table), [{**row, "reaper_archived_at": self.archived_at} for row in rows])


def _archive_table(source: Table, name: str) -> Table:
    # The same columns without keys or constraints (a row deleted, restored and deleted again is
    # archived twice), plus a key of its own and the time of archiving.
    columns: list[Column[Any]] = [Column("reaper_archive_id", Integer, primary_key=True, autoincrement=True)]
    columns += [Column(column.name, column.type, nullable=True) for column in source.columns]
    columns.append(Column("reaper_archived_at", DateTime(), nullable=True))
    return Table(name, MetaData(), *columns, schema=source.schema)  # beside the task table, in its schema


def open_archive(mode: str, directory: Path, table_name: str | None, source: Table, engine: Engine,
                 started: datetime) -> Archive | None:
    """Return the archive a run writes deleted rows to, or ``None`` when archiving is off."""
    if mode == "jsonl":
        return JsonlArchive(directory, source.name, started)
    if mode == "table":
        return TableArchive(engine, source, table_name or f"{source.name}_archive", started)
    return None
