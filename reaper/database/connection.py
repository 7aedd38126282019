"""The database boundary: engine creation, session limits, and driver errors turned into our own."""

from __future__ import annotations

import inspect
import math
import os
import re
import socket
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    IntegrityError,
    NoSuchModuleError,
    OperationalError,
    SAWarning,
    SQLAlchemyError,
)

from reaper.errors import ConfigError, DatabaseError

# Lock conflicts worth retrying: MySQL/MariaDB lock wait timeout and deadlock; PostgreSQL
# deadlock, lock_timeout and serialization failure; SQLite's busy database.
MYSQL_LOCK_ERRORS = {1205, 1213}
POSTGRES_LOCK_STATES = {"40P01", "55P03", "40001"}
# Refusals that no retry mends: a wrong password, a missing privilege (MySQL/MariaDB error numbers,
# PostgreSQL SQLSTATEs).
MYSQL_ACCESS_ERRORS = {1044, 1045, 1142, 1227}
POSTGRES_ACCESS_STATES = {"28000", "28P01", "42501"}
CONNECT_TIMEOUT_SECONDS = 10
MICROSECONDS = 1_000_000
MYSQL_CONSTRAINT = re.compile(r"CONSTRAINT `([^`]+)`")
# What MySQL and MariaDB say of a row they will not take, that PyMySQL does not class as an integrity
# or data error: a column without a default (1364), a value it cannot hold (1366, 1292), a check (3819, 4025).
MYSQL_ROW_ERRORS = {1364, 1366, 1292, 3819, 4025}
# Query arguments a driver takes as a password: password, PyMySQL's passwd, libpq's sslpassword.
SECRET_QUERY_KEY = re.compile("pass", re.IGNORECASE)
MASK = "***"
UNPARSABLE_URL = "(a database URL that cannot be parsed; not shown)"


@dataclass(frozen=True)
class SessionLimits:
    """Per-session limits set on every connection, so that no statement waits or runs for long."""

    lock_timeout_seconds: float = 5.0
    statement_timeout_seconds: float = 60.0
    connect_timeout_seconds: int = CONNECT_TIMEOUT_SECONDS


def identity() -> str:
    """Who this process is, as told to the database and to other reapers."""
    return f"reaper@{socket.gethostname()}:{os.getpid()}"


def backend_of(url: URL) -> str:
    """Return ``mysql`` (for MySQL and MariaDB URLs alike), ``postgresql``, ``sqlite``, or another name."""
    backend = url.get_backend_name()
    return "mysql" if backend in ("mysql", "mariadb") else backend


def url_secrets(url: URL) -> tuple[str, ...]:
    """The passwords a URL holds (its user part, its query), which no output may show."""
    secrets = [str(url.password)] if url.password else []
    for key, value in url.query.items():
        if SECRET_QUERY_KEY.search(key):
            secrets += [value] if isinstance(value, str) else list(value)
    return tuple(secret for secret in secrets if secret)


def safe_url(url: URL | str) -> str:
    """A database URL as every message shows it: each password masked; a URL that cannot be parsed, not at all."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        return UNPARSABLE_URL
    secret_keys = [key for key in parsed.query if SECRET_QUERY_KEY.search(key)]
    parsed = parsed.update_query_dict(dict.fromkeys(secret_keys, MASK))
    shown = parsed.render_as_string(hide_password=True)
    return redact(shown.replace("=%2A%2A%2A", f"={MASK}"), url_secrets(make_url(url)))


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return ``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def sqlite_file(url: URL) -> Path | None:
    """Return the file of a SQLite URL, or ``None`` for an in-memory or URI database."""
    database = url.database
    if backend_of(url) != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def whole_units(seconds: float, per_second: int) -> int:
    """Return a time-out in the database's unit (``per_second`` to a second), rounded up.

    Every database reads 0 as "no limit", so a limit shorter than one unit becomes one unit, never 0.
    """
    # round() first: 0.3 s is 300 ms, not the 301 that the float's error would round up to
    return max(1, math.ceil(round(seconds * per_second, 6)))


def _mysql_session(dbapi_connection: Any, limits: SessionLimits) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("SELECT VERSION()")
    mariadb = "mariadb" in str(cursor.fetchone()[0]).lower()
    # Session time in UTC, so that TIMESTAMP columns compare in UTC whatever the server's zone.
    cursor.execute("SET time_zone = '+00:00'")
    cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {whole_units(limits.lock_timeout_seconds, 1)}")
    if mariadb:  # seconds, to the microsecond
        micros = whole_units(limits.statement_timeout_seconds, MICROSECONDS)
        cursor.execute(f"SET SESSION max_statement_time = {micros // MICROSECONDS}.{micros % MICROSECONDS:06d}")
    else:
        cursor.execute(f"SET SESSION max_execution_time = {whole_units(limits.statement_timeout_seconds, 1000)}")
    cursor.close()


def _sqlite_session(dbapi_connection: Any, limits: SessionLimits) -> None:
    cursor = dbapi_connection.cursor()
    # Respect the application's foreign keys: SQLite enforces them only when asked, per connection.
    cursor.execute("PRAGMA foreign_keys = ON")
    # In whole milliseconds, set here: the driver's own timeout= truncates (0.0004 s would not wait at all).
    cursor.execute(f"PRAGMA busy_timeout = {whole_units(limits.lock_timeout_seconds, 1000)}")
    cursor.close()


def _engine_options(url: URL, limits: SessionLimits) -> dict[str, Any]:
    backend = backend_of(url)
    if backend == "sqlite":
        return {}  # its busy time-out is set per connection, see _sqlite_session
    if backend == "postgresql":
        options = (
            f"-c lock_timeout={whole_units(limits.lock_timeout_seconds, 1000)} "
            f"-c statement_timeout={whole_units(limits.statement_timeout_seconds, 1000)} -c TimeZone=UTC"
        )
        given = url.query.get("options")
        if isinstance(given, str):  # connect_args win over the URL's own: keep the URL's, ours last (they win)
            options = f"{given} {options}"
        connect_args: dict[str, Any] = {"options": options, "application_name": identity()[:63]}
        if "connect_timeout" not in url.query:  # connect_args win over the URL's own
            connect_args["connect_timeout"] = limits.connect_timeout_seconds
        return {"pool_pre_ping": True, "connect_args": connect_args}
    if backend == "mysql":
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": limits.connect_timeout_seconds}}
    return {"pool_pre_ping": True}


def _check_driver_arguments(engine: Engine, url: URL) -> None:
    """Raise ``TypeError`` or ``ValueError`` now for URL arguments the driver would refuse at its first connection."""
    args, kwargs = engine.dialect.create_connect_args(url)
    dbapi = engine.dialect.loaded_dbapi
    try:
        signature = inspect.signature(dbapi.connect)
    except (TypeError, ValueError):  # a built-in without one (sqlite3): SQLAlchemy checks its arguments
        return
    signature.bind(*args, **kwargs)  # TypeError: an argument it does not take
    if engine.dialect.driver == "psycopg":  # the rest of psycopg's arguments go to libpq, which checks the names
        from psycopg.conninfo import make_conninfo

        try:
            make_conninfo("", **{key: value for key, value in kwargs.items() if key not in signature.parameters})
        except dbapi.Error as exc:
            raise ValueError(str(exc)) from None


def create_db_engine(url: URL, limits: SessionLimits | None = None, *, must_exist: bool = True) -> Engine:
    """Create an engine for ``url`` whose sessions carry ``limits``; a missing SQLite file is an error."""
    limits = limits or SessionLimits()
    safe = safe_url(url)
    path = sqlite_file(url)
    if must_exist and path is not None and not path.is_file():
        raise ConfigError(f"SQLite database file {str(path)!r} does not exist (REAPER_DATABASE_URL={safe})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", SAWarning)  # SQLite's dialect only warns that it ignores an argument
            engine = create_engine(url, **_engine_options(url, limits))
            _check_driver_arguments(engine, url)
    except NoSuchModuleError:
        raise ConfigError(f"unknown database dialect or driver in REAPER_DATABASE_URL={safe}") from None
    except ImportError as exc:
        raise ConfigError(
            f"the driver for {url.drivername!r} is not installed ({exc.name or exc}); "
            "install it, for example pip install 'reaper[postgresql]'"
        ) from None
    except ArgumentError as exc:
        raise ConfigError(redact(f"invalid REAPER_DATABASE_URL={safe}: {exc}", url_secrets(url))) from None
    except (SAWarning, TypeError, ValueError) as exc:  # a query argument the driver does not take, or a bad value
        detail = str(exc).splitlines()[0].split(" (Background on this")[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"an argument of REAPER_DATABASE_URL={safe} is not one the {url.drivername} driver takes: "
            f"{redact(detail, (*url_secrets(url), *map(str, url.query.values())))}"
        ) from None
    backend = backend_of(url)
    if backend == "mysql":
        event.listen(engine, "connect", lambda dbapi_connection, _: _mysql_session(dbapi_connection, limits))
    elif backend == "sqlite":
        event.listen(engine, "connect", lambda dbapi_connection, _: _sqlite_session(dbapi_connection, limits))
    return engine


def _first_line(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip() or type(original).__name__
    return text.splitlines()[0]


def is_lock_conflict(exc: BaseException) -> bool:
    """Whether a driver error is a lock wait time-out or a deadlock: worth retrying."""
    original = getattr(exc, "orig", None)
    if original is None:
        return False
    args = getattr(original, "args", ())
    if args and isinstance(args[0], int) and args[0] in MYSQL_LOCK_ERRORS:
        return True
    if getattr(original, "sqlstate", None) in POSTGRES_LOCK_STATES:
        return True
    return "database is locked" in str(original)


def is_access_denied(exc: BaseException) -> bool:
    """Whether a driver error says the login or a privilege is refused: waiting will not mend it."""
    original = getattr(exc, "orig", None)
    if original is None:
        return False
    args = getattr(original, "args", ())
    if args and isinstance(args[0], int) and args[0] in MYSQL_ACCESS_ERRORS:
        return True
    return getattr(original, "sqlstate", None) in POSTGRES_ACCESS_STATES


def refused_by_constraint(exc: BaseException) -> bool:
    """Whether the database refused a write because of a constraint (a foreign key, most often)."""
    return isinstance(exc, IntegrityError)


def refuses_row(exc: BaseException) -> bool:
    """Whether the database refused an INSERT because of the values of a row (a constraint, a column
    without a default, a value the column cannot hold), not because of the session or the server."""
    if isinstance(exc, IntegrityError | DataError):
        return True
    args: tuple[Any, ...] = getattr(getattr(exc, "orig", None), "args", ())
    return bool(args) and args[0] in MYSQL_ROW_ERRORS


def constraint_name(exc: BaseException) -> str:
    """Name the constraint that refused a write, as well as the driver lets us."""
    original = getattr(exc, "orig", None)
    diag = getattr(original, "diag", None)
    if diag is not None and getattr(diag, "constraint_name", None):
        return str(diag.constraint_name)
    match = MYSQL_CONSTRAINT.search(str(original))
    if match:
        return match.group(1)
    return "a FOREIGN KEY constraint" if "FOREIGN KEY" in str(original).upper() else _first_line(exc)


def error_kind(exc: SQLAlchemyError) -> str:
    """Return a short, bounded label for a database error (used in logs and metric labels)."""
    if is_lock_conflict(exc):
        return "lock"
    if isinstance(exc, IntegrityError):
        return "integrity"
    if isinstance(exc, OperationalError):
        return "operational"
    if isinstance(exc, DBAPIError):
        return "database"
    return "sqlalchemy"


@contextmanager
def database_errors(what: str, secrets: Iterable[str] = ()) -> Iterator[None]:
    """Convert any SQLAlchemy or driver error raised inside into a one-line ``DatabaseError``."""
    try:
        yield
    except SQLAlchemyError as exc:
        message = redact(f"{what}: {_first_line(exc)}", tuple(secrets))
        raise DatabaseError(message, category=error_kind(exc)) from exc
