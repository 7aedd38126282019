"""The interface of a dialect, its defaults, and what the server databases share: their run lock.

``Dialect`` is the whole interface: each method is one thing a database does its own way. A default
is the plain SQL way, or an answer that names the database where reaper needs something particular
of it (the run lock, the server's load); ``UnknownDatabase`` is what a URL of any other database
gets. ``SessionLockDialect`` holds the run lock on a session of its own, for databases whose sessions
take named locks.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger
from sqlalchemy import BigInteger, Column, SmallInteger, Table, inspect
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

from reaper.database.schema import ExistingIndex, reflected_indexes
from reaper.database.textfit import TextFit, declared_chars
from reaper.errors import ConfigError, LockHeld

if TYPE_CHECKING:
    from reaper.database.connection import SessionLimits

LOCK_NAME_LIMIT = 64  # MySQL's limit on a GET_LOCK name: every database uses the same name


def identity() -> str:
    """Who this process is, as told to the database and to other reapers."""
    return f"reaper@{socket.gethostname()}:{os.getpid()}"


def whole_units(seconds: float, per_second: int) -> int:
    """Return a time-out in the database's unit (``per_second`` to a second), rounded up.

    Every database reads 0 as "no limit", so a limit shorter than one unit becomes one unit, never 0.
    """
    # round() first: 0.3 s is 300 ms, not the 301 that the float's error would round up to
    return max(1, math.ceil(round(seconds * per_second, 6)))


def first_line(exc: BaseException) -> str:
    """The first line of what the driver said (of the error itself when no driver is behind it)."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip() or type(original).__name__
    return text.splitlines()[0]


def lock_name(engine: Engine, table: str) -> str:
    """Return the run lock's name: one per database and table."""
    name = f"reaper:{engine.url.database or ''}.{table}"
    if len(name) > LOCK_NAME_LIMIT:
        name = "reaper:" + hashlib.sha256(name.encode()).hexdigest()[:40]
    return name


@dataclass(frozen=True)
class Lag:
    """A replica's lag in seconds, or why there is no figure (``lasting``: no wait will mend it)."""

    seconds: float | None
    problem: str = ""
    lasting: bool = False


class RunLock:
    """A held run lock; ``held()`` asks the database whether it is still ours (a dropped session loses it)."""

    def __init__(self, check: Callable[[], bool] = lambda: True) -> None:
        self._check = check

    def held(self) -> bool:
        """Whether this process still holds the lock; a question the database cannot answer means no."""
        try:
            return self._check()
        except SQLAlchemyError as exc:  # the lock's session is gone, and the lock with it
            logger.warning(f"the run lock counts as lost: asking whether it is still held failed: {first_line(exc)}")
            return False


class Dialect:
    """What one database does its own way; every other part of reaper is written once for all of them."""

    name = "unknown"
    drivers: tuple[str, ...] = ()  # the DB-API modules (top-level names) whose errors this dialect reads
    standbys: str | None = None  # where a primary lists its standbys' lag; None: only a replica tells its own
    # Whether a list of integer ids is also bounded by its smallest and largest (see TaskTable.key_in).
    bounds_id_lists = True
    # Whether a pass that counts several rules groups the rows by status (see engine.counting.count_walks):
    # MariaDB groups through a temporary table (0.44 s against 0.34 s rule by rule, 1 M rows), SQLite
    # through a sort (0.8 s against 0.4 s).
    counts_by_status = False
    # The share of its span of ids that a rule's matches fill from which a purge along an index walks the
    # primary key instead (see engine.spans): bench/batch_ceiling.py measured MariaDB at 0.61x of a bare
    # DELETE for stretches of ids against 0.39x for index ranges at 42 %.
    dense_share = 0.25
    # Whether an aggregate takes ``FILTER (WHERE ...)`` (see engine.counting): the rows it leaves out never
    # reach the aggregate, where ``count(CASE ...)`` calls it on every row.
    filters_aggregates = False
    # Whether a DELETE or UPDATE can sit in a WITH clause, so that the database sums up what it wrote
    # (see engine.ranges): the count, the id span and the smallest ids, not every id read back.
    summarises_writes = False
    # Whether a read of an index's null range, ``c1 IS NULL`` of (status, c1, id), writes ``ORDER BY c1, id``
    # to be read in the index's order (see engine.selection). MariaDB and SQLite take ``IS NULL`` for an
    # equality and read ``ORDER BY id`` from the index; MariaDB sorts ``ORDER BY c1, id`` there.
    orders_null_range_by_column = False

    # --- connecting: the engine, and what every session is told ---

    def database_file(self, url: URL) -> Path | None:
        """The file the URL's database is, for a database kept in a file (``None``: a server, or memory)."""
        return None

    def engine_options(self, url: URL, limits: SessionLimits) -> dict[str, Any]:
        """The arguments of ``create_engine`` for ``url``: those that carry ``limits`` to each session."""
        return {"pool_pre_ping": True}

    def set_up_session(self, dbapi_connection: Any, limits: SessionLimits) -> None:
        """Tell a new DB-API connection its ``limits`` (and its time zone) where the URL's arguments cannot."""

    def check_driver_arguments(self, engine: Engine, arguments: Mapping[str, Any], named: Sequence[str]) -> None:
        """Raise ``ValueError`` for a connect argument the driver would refuse only at its first connection
        (``named``: the arguments its ``connect()`` names itself, already checked)."""

    # --- one run at a time ---

    def run_lock(self, engine: Engine, table: str) -> AbstractContextManager[RunLock]:
        """Hold ``table``'s run lock for the body; raise ``LockHeld`` naming the holder when it is taken."""
        raise ConfigError(
            f"reaper can keep one run at a time only on SQLite, MySQL/MariaDB and PostgreSQL, not {self.name}"
        )

    # --- statements and values ---

    def deletes_returning(self, engine: Engine) -> bool:
        """Whether ``DELETE ... RETURNING`` works here; without it, rows are locked, read, then deleted."""
        return bool(engine.dialect.delete_returning)

    def range_isolation(self, conn: Connection) -> str | None:
        """The isolation for a session that deletes ranges of ids (``None``: the database's default).

        A range's DELETE scans rows it does not delete: the isolation decides whether it locks them too.
        """
        return None

    def table_pages(self, conn: Connection, table: Table) -> int | None:
        """How many pages ``table`` holds, where a statement can read a range of them (``within_pages``);
        ``None`` here: a walk over the whole table goes along its primary key."""
        return None

    def within_pages(self, first: int, stop: int) -> ColumnElement[bool]:
        """The rows on pages ``first`` to ``stop - 1`` (only where ``table_pages`` counts them)."""
        raise NotImplementedError(f"{self.name} reads no range of a table's pages")

    def planned_rows(self, conn: Connection, query: Select[Any]) -> float | None:
        """How many rows the planner expects ``query`` to return, where its estimate is read cheaply and
        follows the table's statistics; ``None`` here: rows are counted."""
        return None

    def one_of(self, column: Column[Any], values: Sequence[Any]) -> ColumnElement[bool]:
        """``column IN (values)``: a batch's ids, one bound parameter each."""
        return column.in_(values)

    def before(self, column: ColumnElement[Any], value: datetime) -> ColumnElement[bool]:
        """``column < value``, for a timestamp ``column`` and ``value`` as the column stores it."""
        earlier: ColumnElement[bool] = column < value
        return earlier

    def since(self, column: ColumnElement[Any], value: datetime) -> ColumnElement[bool]:
        """``column >= value``: the negation of ``before`` for a row whose column holds a timestamp."""
        later: ColumnElement[bool] = column >= value
        return later

    def as_stored(self, column: Column[Any]) -> ColumnElement[Any]:
        """The column as the database compares it, to page on: the column itself."""
        return column

    def exact_type(self, column_type: TypeEngine[Any]) -> TypeEngine[Any] | None:
        """The type that keeps ``column_type``'s values unchanged here, where the plain rule of ``values`` does not."""
        return None

    def text_fit(self, conn: Connection, column: Column[Any]) -> TextFit:
        """What the text column ``column`` holds: here, its declared length."""
        return TextFit(max_chars=declared_chars(column))

    def integer_bits(self, column_type: TypeEngine[Any]) -> int:
        """How many bits an integer column of ``column_type`` holds."""
        if isinstance(column_type, BigInteger):
            return 64
        return 16 if isinstance(column_type, SmallInteger) else 32

    # --- the schema ---

    def indexes(self, engine: Engine, table: Table) -> list[ExistingIndex]:
        """The indexes, unique constraints and primary key ``table`` has now, as the database reports them."""
        return reflected_indexes(inspect(engine), table.name, table.schema)

    def appends_primary_key(self, table: Table, id_column: Column[Any]) -> bool:
        """Whether every secondary index of ``table`` ends with its primary key without naming it."""
        return False

    def declared_types(self, conn: Connection, table_name: str) -> dict[str, str]:
        """The type of each column of ``table_name``, as the database spells its declaration."""
        return {}

    # --- the server's load and its replicas' lag (read by the throttle) ---

    def check_load_names(self, names: Sequence[str]) -> None:
        """Raise ``ValueError`` for a load NAME the database cannot have (the server may refuse more)."""
        raise ValueError(f"load limits are read on MySQL, MariaDB and PostgreSQL, not {self.name}")

    def read_load(self, conn: Connection, names: Sequence[str]) -> dict[str, float | None]:
        """The value of each of ``names`` that the server knows (``None``: not a number)."""
        return {}

    def load_unseen(self, conn: Connection) -> str | None:
        """Why this login cannot see other sessions' load or the standbys' lag; ``None`` when it can."""
        return None

    def replica_lag(self, conn: Connection) -> Lag:
        """The lag of the replica ``conn`` is connected to."""
        return Lag(None, f"cannot tell its lag: reaper reads none on {self.name}", lasting=True)

    def standby_lag(self, conn: Connection) -> Lag:
        """The largest lag of the standbys that the primary ``conn`` is connected to lists (see ``standbys``)."""
        return Lag(None, f"lists no standby: reaper reads none on {self.name}", lasting=True)

    # --- errors: what a DB-API exception (``orig``) of one of ``drivers`` means ---

    def reads_error(self, exc: DBAPIError) -> bool:
        """Whether ``exc`` comes from one of this dialect's drivers."""
        return type(exc.orig).__module__.partition(".")[0] in self.drivers

    def lock_conflict(self, exc: DBAPIError) -> bool:
        """Whether the statement waited too long for a lock, or was chosen to end a deadlock: worth retrying."""
        return False

    def access_denied(self, exc: DBAPIError) -> bool:
        """Whether the login or a privilege is refused: waiting will not mend it."""
        return False

    def unreachable(self, exc: DBAPIError) -> bool:
        """Whether the server could not be reached, or dropped the session."""
        return False

    def refuses_row(self, exc: DBAPIError) -> bool:
        """Whether the database refused a row's values where the driver does not say so by its error's class."""
        return False

    def constraint_name(self, exc: DBAPIError) -> str | None:
        """The name of the constraint that refused a write, when the driver tells it."""
        return None


class UnknownDatabase(Dialect):
    """A database reaper has no dialect for: SQLAlchemy may reach it; the run lock and the throttle refuse it."""

    def __init__(self, name: str) -> None:
        self.name = name


class SessionLockDialect(Dialect):
    """A server database whose sessions take named locks that end with them (``GET_LOCK``, advisory locks).

    The run lock is held by a session of its own, kept open for the run: if the process dies, the
    server drops the connection and the lock with it.
    """

    @contextmanager
    def run_lock(self, engine: Engine, table: str) -> Iterator[RunLock]:
        """Hold ``table``'s run lock on a session of its own; raise ``LockHeld`` naming the holder when taken."""
        name = lock_name(engine, table)
        # The lock belongs to the session, not to a transaction: in autocommit the session holds none
        # open between its statements, so idle_in_transaction_session_timeout never ends it and no
        # long-transaction alert sees a run as one transaction hours long.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            self.keep_session_open(conn)
            if not self.try_lock(conn, name):
                raise LockHeld(f"another reaper holds the lock {name!r}: {self.lock_holder(conn, name)}")
            try:
                yield RunLock(lambda: self.holds_lock(conn, name))
            finally:
                self._release(conn, name)

    def _release(self, conn: Connection, name: str) -> None:
        try:
            self.release_lock(conn, name)
        except SQLAlchemyError as exc:  # the session is gone, and the server dropped the lock with it
            logger.warning(f"could not release the lock {name!r} (the server has dropped it): {first_line(exc)}")

    def keep_session_open(self, conn: Connection) -> None:
        """The lock's session sits idle for the whole run: keep the server from closing it."""

    def try_lock(self, conn: Connection, name: str) -> bool:
        """Take the lock ``name`` without waiting; return whether this session has it now."""
        raise NotImplementedError

    def lock_holder(self, conn: Connection, name: str) -> str:
        """Say who holds the lock ``name``, as well as the server tells."""
        raise NotImplementedError

    def holds_lock(self, conn: Connection, name: str) -> bool:
        """Whether this session (``conn``) still holds the lock ``name``."""
        raise NotImplementedError

    def release_lock(self, conn: Connection, name: str) -> None:
        """Let the lock ``name`` go."""
        raise NotImplementedError
