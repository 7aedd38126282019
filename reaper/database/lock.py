"""One reaper at a time per table: the database's own lock, held only for the run.

MySQL and MariaDB use ``GET_LOCK`` and PostgreSQL a session advisory lock, each on a connection of
its own kept open for the run: if the process dies, the server drops the connection and the lock
with it. A SQLite database is a file on one machine, so an exclusive ``flock`` on a file beside it
plays the same part (SQLite's own write lock would block the application's writers for the whole
run). Another reaper that finds the lock taken learns who holds it and skips.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from loguru import logger
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from reaper.database.connection import backend_of, identity, sqlite_file
from reaper.errors import ConfigError, LockHeld
from reaper.safety.filenames import file_safe

MYSQL_LOCK_NAME_LIMIT = 64
LOCK_SESSION_IDLE_SECONDS = 7 * 86400


def lock_name(engine: Engine, table: str) -> str:
    """Return the lock's name: one per database and table."""
    name = f"reaper:{engine.url.database or ''}.{table}"
    if len(name) > MYSQL_LOCK_NAME_LIMIT:
        name = "reaper:" + hashlib.sha256(name.encode()).hexdigest()[:40]
    return name


def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _mysql_holder(conn: Connection, name: str) -> str:
    holder = conn.execute(text("SELECT IS_USED_LOCK(:name)"), {"name": name}).scalar()
    if holder is None:
        return "another session (it has just released the lock)"
    who = conn.execute(
        text("SELECT USER, HOST FROM information_schema.PROCESSLIST WHERE ID = :id"), {"id": holder}
    ).first()
    return f"connection {holder} ({who[0]}@{who[1]})" if who else f"connection {holder}"


def _postgres_holder(conn: Connection, key: int) -> str:
    high, low = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    who = conn.execute(
        text(
            "SELECT a.pid, a.application_name, a.client_addr FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid::bigint = :high AND l.objid::bigint = :low"
        ),
        {"high": high, "low": low},
    ).first()
    return f"backend pid {who[0]} ({who[1] or 'no application name'} from {who[2]})" if who else "another session"


class RunLock:
    """A held lock; ``held()`` asks the database whether it is still ours (a dropped session loses it)."""

    def __init__(self, check: Callable[[], bool] = lambda: True) -> None:
        self._check = check

    def held(self) -> bool:
        """Whether this process still holds the lock."""
        try:
            return self._check()
        except SQLAlchemyError:
            return False


def _mysql_check(conn: Connection, name: str) -> Callable[[], bool]:
    statement = text("SELECT IS_USED_LOCK(:name) = CONNECTION_ID()")
    return lambda: bool(conn.execute(statement, {"name": name}).scalar())


def _postgres_check(conn: Connection, key: int) -> Callable[[], bool]:
    high, low = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    statement = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid() "
        "AND classid::bigint = :high AND objid::bigint = :low"
    )
    return lambda: bool(conn.execute(statement, {"high": high, "low": low}).scalar())


def _release(conn: Connection, backend: str, name: str, key: int) -> None:
    try:
        if backend == "mysql":
            conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
        else:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    except SQLAlchemyError as exc:  # the session is gone, and the server dropped the lock with it
        logger.warning(f"could not release the lock {name!r} (the server has dropped it): {getattr(exc, 'orig', exc)}")


def _keep_idle_session(conn: Connection, backend: str) -> None:
    """The lock's session sits idle for the whole run: keep the server from closing it."""
    if backend == "mysql":
        conn.execute(text(f"SET SESSION wait_timeout = {LOCK_SESSION_IDLE_SECONDS}"))
    elif (conn.dialect.server_version_info or (0,)) >= (14,):  # idle_session_timeout came with PostgreSQL 14
        conn.execute(text("SET SESSION idle_session_timeout = 0"))


@contextmanager
def _server_lock(engine: Engine, name: str) -> Iterator[RunLock]:
    backend = backend_of(engine.url)
    key = _advisory_key(name)
    # Both locks belong to the session, not to a transaction: in autocommit the session holds none
    # open between its statements, so idle_in_transaction_session_timeout never ends it and no
    # long-transaction alert sees a run as one transaction hours long.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        _keep_idle_session(conn, backend)
        if backend == "mysql":
            got = conn.execute(text("SELECT GET_LOCK(:name, 0)"), {"name": name}).scalar() == 1
        else:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())
        if not got:
            holder = _mysql_holder(conn, name) if backend == "mysql" else _postgres_holder(conn, key)
            raise LockHeld(f"another reaper holds the lock {name!r}: {holder}")
        check = _mysql_check(conn, name) if backend == "mysql" else _postgres_check(conn, key)
        try:
            yield RunLock(check)
        finally:
            _release(conn, backend, name, key)


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


@contextmanager
def exclusive_run(engine: Engine, table: str) -> Iterator[RunLock]:
    """Hold the table's reaper lock for the body; raise ``LockHeld`` naming the holder if taken."""
    backend = backend_of(engine.url)
    if backend in ("mysql", "postgresql"):
        with _server_lock(engine, lock_name(engine, table)) as lock:
            yield lock
        return
    if backend != "sqlite":
        raise ConfigError(
            f"reaper can keep one run at a time only on SQLite, MySQL/MariaDB and PostgreSQL, not {backend}"
        )
    path = sqlite_file(engine.url)
    if path is None:  # an in-memory database is private to this process
        yield RunLock()
        return
    with _file_lock(path.with_name(f"{path.name}.{file_safe(table)}.reaper-lock")) as lock:
        yield lock

