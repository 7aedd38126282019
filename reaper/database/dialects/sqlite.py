"""SQLite: a database in one file, on the machine that runs reaper.

- Sessions: foreign keys enforced (SQLite enforces them only when each connection asks), the busy
  time-out in whole milliseconds, a page cache of 64 MiB; there is no statement time-out.
- The run lock: an exclusive ``flock`` on a file beside the database (SQLite's own write lock would
  block the application's writers for the whole run); an in-memory database is private to its process.
- Timestamps are text in whatever spelling the application wrote, compared as moments (``julianday``)
  and paged on as text; every value is read as stored; integers have 64 bits.
- Indexes end with the rowid, which a column declared exactly ``INTEGER PRIMARY KEY`` is.
- No server load, no replicas.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, DateTime, String, Table, and_, func, literal, text, type_coerce
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

from reaper.database.dialects.base import Dialect, RunLock, identity, whole_units
from reaper.database.exact_types import BINARY_TYPES, Stored
from reaper.database.filenames import file_safe
from reaper.errors import LockHeld

if TYPE_CHECKING:
    from reaper.database.connection import SessionLimits


PAGE_CACHE_KIB = 64 * 1024  # at most 64 MiB of pages in reaper's process, whatever the database's size


class SQLite(Dialect):
    """SQLite, through Python's ``sqlite3``."""

    name = "sqlite"
    drivers = ("sqlite3",)
    # With the bounds, SQLite reads the whole rowid range between them instead of looking each id up:
    # a batch read along an index holds ids in age order, spread over the table (50,000 zombies in
    # batches of 2,500 at 1 M rows: 8.8 s against 3.2 s without).
    bounds_id_lists = False
    # The opening count of four rules at 1 M rows: 0.50-0.54 s with FILTER, 0.59-0.61 s with CASE.
    filters_aggregates = True

    def database_file(self, url: URL) -> Path | None:
        """The database's file; ``None`` for an in-memory or URI database."""
        database = url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return Path(database)

    def engine_options(self, url: URL, limits: SessionLimits) -> dict[str, Any]:
        """None: a file needs no ping, and the busy time-out is set on each connection (``set_up_session``)."""
        return {}

    def set_up_session(self, dbapi_connection: Any, limits: SessionLimits) -> None:
        """Enforce foreign keys, wait ``limits.lock_timeout_seconds`` for a lock, cache up to 64 MiB of pages."""
        cursor = dbapi_connection.cursor()
        # Respect the application's foreign keys: SQLite enforces them only when asked, per connection.
        cursor.execute("PRAGMA foreign_keys = ON")
        # In whole milliseconds, set here: the driver's own timeout= truncates (0.0004 s would not wait at all).
        cursor.execute(f"PRAGMA busy_timeout = {whole_units(limits.lock_timeout_seconds, 1000)}")
        # A page cache of the session's own (SQLite's default is 2 MB): a batch deletes rows whose entries
        # lie all over each index, and a small cache writes out and reads back the same index pages
        # within one transaction (800,000 deletes at 1 M rows with four indexes: 56-91 s, 36-50 s with it).
        cursor.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB}")
        cursor.close()

    @contextmanager
    def run_lock(self, engine: Engine, table: str) -> Iterator[RunLock]:
        """Hold an exclusive ``flock`` on a file beside the database, one per table."""
        path = self.database_file(engine.url)
        if path is None:  # an in-memory database is private to this process
            yield RunLock()
            return
        with _file_lock(path.with_name(f"{path.name}.{file_safe(table)}.reaper-lock")) as lock:
            yield lock

    def before(self, column: ColumnElement[Any], value: datetime) -> ColumnElement[bool]:
        """``column < value`` as moments, whatever the text's spelling, with a text bound an index can serve."""
        # SQLite keeps timestamps as text in whatever spelling the application wrote ('... 10:00:00',
        # '...T10:00:00', with or without a fraction or an offset): compared as moments, as julianday()
        # reads them. The index cannot serve julianday(); it can serve the text bound, which keeps every
        # ISO spelling of an earlier moment (its date, even with a +14:00 offset, is at most the day
        # after value's) and leaves out what julianday() reads but is no ISO timestamp (a bare '10:00',
        # a number), which TaskTable.from_db() cannot read either.
        bound = literal((value + timedelta(days=2)).strftime("%Y-%m-%d"), String())
        moment = literal(value, column.type)
        return and_(type_coerce(column, String()) < bound, func.julianday(column) < func.julianday(moment))

    def since(self, column: ColumnElement[Any], value: datetime) -> ColumnElement[bool]:
        """``column >= value`` as moments (see ``before``)."""
        # as in before(): every ISO spelling of a later moment sorts after the date a day before value's
        bound = literal((value - timedelta(days=1)).strftime("%Y-%m-%d"), String())
        moment = literal(value, column.type)
        return and_(type_coerce(column, String()) >= bound, func.julianday(column) >= func.julianday(moment))

    def as_stored(self, column: Column[Any]) -> ColumnElement[Any]:
        """A timestamp as its text: a value read back as a datetime and written again would change its
        spelling ('2026-11-29 10:00:00' from CURRENT_TIMESTAMP becomes '... 10:00:00.000000'), and a page
        would skip or repeat rows."""
        return type_coerce(column, String) if isinstance(column.type, DateTime) else column

    def exact_type(self, column_type: TypeEngine[Any]) -> TypeEngine[Any] | None:
        """Every column read as stored (SQLite keeps no other types than text, integer, real, blob)."""
        return column_type if isinstance(column_type, BINARY_TYPES) else Stored()

    def integer_bits(self, column_type: TypeEngine[Any]) -> int:
        """SQLite's integers all have 64 bits, whatever the column declares."""
        return 64

    def appends_primary_key(self, table: Table, id_column: Column[Any]) -> bool:
        """Indexes end with the rowid, which a column declared exactly ``INTEGER PRIMARY KEY`` is."""
        keys = [column for column in table.columns if column.primary_key]
        return keys == [id_column] and str(id_column.type).upper() == "INTEGER"

    def declared_types(self, conn: Connection, table_name: str) -> dict[str, str]:
        """The declared types, from ``pragma_table_info``."""
        columns = conn.execute(text("SELECT name, type FROM pragma_table_info(:name)"), {"name": table_name})
        return {str(name): str(declared) for name, declared in columns}

    def check_load_names(self, names: Sequence[str]) -> None:
        """Refuse any: a file has no server whose load to read."""
        raise ValueError("SQLite has no server load to read")

    def lock_conflict(self, exc: DBAPIError) -> bool:
        """The database is locked: another connection writes, and the busy time-out passed."""
        return "database is locked" in str(exc.orig)

    def unreachable(self, exc: DBAPIError) -> bool:
        """The file cannot be opened (its folder is gone, or not readable)."""
        return "unable to open database file" in str(exc.orig)


@contextmanager
def _file_lock(path: Path) -> Iterator[RunLock]:
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise LockHeld(f"another reaper holds the lock file {str(path)!r}: {holder}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(identity())
        handle.flush()
        try:
            yield RunLock()
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
