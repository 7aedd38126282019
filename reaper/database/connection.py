"""The database boundary: engine creation, session limits, and driver errors turned into our own.

Only the database package sees SQLAlchemy's and the drivers' exceptions: ``database_errors`` turns
each into a ``reaper.errors.DatabaseError`` whose class says what the database meant (a lock
conflict, a refused row, a refused login or privilege, a server out of reach), as the dialect of the
driver reads it; callers catch those. What each database does its own way is in ``dialects``.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import re
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

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

from reaper.database.dialects import dialect_for_error, dialect_of
from reaper.database.dialects.base import first_line
from reaper.errors import (
    AccessDenied,
    ConfigError,
    ConstraintRefused,
    DatabaseError,
    LockConflict,
    RowRefused,
    Unreachable,
)

# Query arguments a driver takes as a password: password, PyMySQL's passwd, libpq's sslpassword.
SECRET_QUERY_KEY = re.compile("pass", re.IGNORECASE)
MASK = "***"
CONNECT_TIMEOUT_SECONDS = 10
UNPARSABLE_URL = "(a database URL that cannot be parsed; not shown)"
# What SQLAlchemy defaults to for mysql:// and postgresql:// (mysqlclient, psycopg2) is not among
# reaper's dependencies: the driver to name in the URL instead, the module it imports, how to install
# it (PyMySQL comes with reaper; psycopg with the postgresql extra of the task-reaper distribution).
WORKING_DRIVERS = {
    "mysql": ("pymysql", "PyMySQL", "pip install PyMySQL"),
    "postgresql": ("psycopg", "psycopg", "pip install 'task-reaper[postgresql]'"),
}


@dataclass(frozen=True)
class SessionLimits:
    """Per-session limits set on every connection, so that no statement waits or runs for long."""

    lock_timeout_seconds: float = 5.0
    statement_timeout_seconds: float = 60.0
    connect_timeout_seconds: int = CONNECT_TIMEOUT_SECONDS


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


def parse_url(text: str) -> URL:
    """Parse a database URL; raise ``ValueError`` when it is not one."""
    try:
        return make_url(text)
    except ArgumentError as exc:
        raise ValueError(str(exc)) from None


def _check_driver_arguments(engine: Engine, url: URL) -> None:
    """Raise ``TypeError`` or ``ValueError`` now for URL arguments the driver would refuse at its first connection."""
    args, kwargs = engine.dialect.create_connect_args(url)
    try:
        signature = inspect.signature(engine.dialect.loaded_dbapi.connect)
    except (TypeError, ValueError):  # a built-in without one (sqlite3): SQLAlchemy checks its arguments
        return
    signature.bind(*args, **kwargs)  # TypeError: an argument it does not take
    dialect_of(engine).check_driver_arguments(engine, kwargs, tuple(signature.parameters))


def _missing_driver(url: URL, exc: ImportError) -> str:
    """Say which driver is missing and the URL that works with the drivers reaper installs."""
    missing = f"the {url.get_driver_name()} driver of {url.drivername}:// URLs is not installed ({exc.name or exc})"
    backend = dialect_of(url).name
    if backend not in WORKING_DRIVERS:
        return f"{missing}; install it where reaper runs"
    driver, distribution, install = WORKING_DRIVERS[backend]
    working = safe_url(url.set(drivername=f"{url.get_backend_name()}+{driver}"))
    if importlib.util.find_spec(driver) is None:
        return f"{missing}: {install}, and use {working}"
    return f"{missing}; {distribution} is: use {working}"


def create_db_engine(url: URL, limits: SessionLimits | None = None, *, must_exist: bool = True) -> Engine:
    """Create an engine for ``url`` whose sessions carry ``limits``; a missing SQLite file is an error."""
    limits = limits or SessionLimits()
    safe = safe_url(url)
    dialect = dialect_of(url)
    path = dialect.database_file(url)
    if must_exist and path is not None and not path.is_file():
        raise ConfigError(
            f"SQLite database file {str(path)!r} does not exist (REAPER_DATABASE_URL={safe}): set --database-url "
            "or REAPER_DATABASE_URL to your application's database (reaper cleans a table, it creates none), "
            "or try reaper --demo, which makes a database of its own"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", SAWarning)  # SQLite's dialect only warns that it ignores an argument
            engine = create_engine(url, **dialect.engine_options(url, limits))
            _check_driver_arguments(engine, url)
    except NoSuchModuleError:
        raise ConfigError(f"unknown database dialect or driver in REAPER_DATABASE_URL={safe}") from None
    except ImportError as exc:
        raise ConfigError(_missing_driver(url, exc)) from None
    except ArgumentError as exc:
        raise ConfigError(redact(f"invalid REAPER_DATABASE_URL={safe}: {exc}", url_secrets(url))) from None
    except (SAWarning, TypeError, ValueError) as exc:  # a query argument the driver does not take, or a bad value
        detail = str(exc).splitlines()[0].split(" (Background on this")[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"an argument of REAPER_DATABASE_URL={safe} is not one the {url.drivername} driver takes: "
            f"{redact(detail, (*url_secrets(url), *map(str, url.query.values())))}"
        ) from None
    event.listen(engine, "connect", lambda dbapi_connection, _: dialect.set_up_session(dbapi_connection, limits))
    return engine


def _category(exc: SQLAlchemyError) -> type[DatabaseError]:
    """Which of our errors ``exc`` is, as the dialect of its driver reads it."""
    if not isinstance(exc, DBAPIError):
        return DatabaseError
    dialect = dialect_for_error(exc)
    if dialect.lock_conflict(exc):
        return LockConflict
    if isinstance(exc, IntegrityError):
        return ConstraintRefused
    if isinstance(exc, DataError) or dialect.refuses_row(exc):
        return RowRefused
    if dialect.access_denied(exc):
        return AccessDenied
    if exc.connection_invalidated or dialect.unreachable(exc):  # SQLAlchemy saw the connection drop
        return Unreachable
    return DatabaseError


def _label(exc: SQLAlchemyError, category: type[DatabaseError]) -> str:
    """A short, bounded label for a database error (used in logs and metric labels)."""
    if category is LockConflict:
        return "lock"
    if isinstance(exc, IntegrityError):
        return "integrity"
    if isinstance(exc, OperationalError):
        return "operational"
    return "database" if isinstance(exc, DBAPIError) else "sqlalchemy"


def _refused_by(exc: DBAPIError) -> str:
    """Name the constraint that refused a write, as well as the driver lets us."""
    name = dialect_for_error(exc).constraint_name(exc)
    if name:
        return name
    return "a FOREIGN KEY constraint" if "FOREIGN KEY" in str(exc.orig).upper() else first_line(exc)


def converted(exc: SQLAlchemyError, what: str = "", secrets: Iterable[str] = ()) -> DatabaseError:
    """Our own error for a SQLAlchemy or driver error: one line (after ``what``, when given), no password."""
    secrets = tuple(secrets)
    message = redact(f"{what}: {first_line(exc)}" if what else first_line(exc), secrets)
    category = _category(exc)
    if issubclass(category, RowRefused) and isinstance(exc, DBAPIError):
        return category(message, _label(exc, category), what, refused_by=redact(_refused_by(exc), secrets))
    return category(message, _label(exc, category), what)


def _said_where(error: DatabaseError, what: str, secrets: Iterable[str]) -> DatabaseError:
    """``error`` (of the same class) with a message that starts with what reaper was doing."""
    placed = copy.copy(error)
    placed.args = (redact(f"{what}: {error}", tuple(secrets)),)
    placed.where = what
    return placed


@contextmanager
def database_errors(what: str = "", secrets: Iterable[str] = ()) -> Iterator[None]:
    """Turn any SQLAlchemy or driver error raised inside into our own ``DatabaseError``, one line after
    ``what``; one already turned further in that does not say yet what reaper was doing gets ``what``."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise converted(exc, what, secrets) from exc
    except DatabaseError as exc:
        if not what or exc.where:
            raise
        raise _said_where(exc, what, secrets) from exc.__cause__
