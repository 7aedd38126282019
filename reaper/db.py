"""The database boundary: engine creation and conversion of driver errors into our own."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)

from reaper.errors import ConfigError, DatabaseError

# A SQLite database stays readable while another process writes; a reaper that waits a little
# beats one that fails with "database is locked" at the first busy moment.
SQLITE_BUSY_TIMEOUT_SECONDS = 30


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return ``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def create_db_engine(url: URL, *, must_exist: bool = True) -> Engine:
    """Create an engine for ``url``; a missing SQLite file is an error unless ``must_exist`` is false."""
    safe = url.render_as_string(hide_password=True)
    kwargs: dict[str, object] = {"pool_pre_ping": True}
    if url.get_backend_name() == "sqlite":
        path = _sqlite_file(url)
        if must_exist and path is not None and not path.is_file():
            raise ConfigError(f"SQLite database file {str(path)!r} does not exist (REAPER_DATABASE_URL={safe})")
        kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}}
    elif url.get_backend_name() == "mysql":
        # Session time in UTC, so that TIMESTAMP columns compare in UTC whatever the server's zone.
        kwargs["connect_args"] = {"init_command": "SET time_zone = '+00:00'"}
    try:
        return create_engine(url, **kwargs)
    except NoSuchModuleError:
        raise ConfigError(f"unknown database dialect or driver in REAPER_DATABASE_URL={safe}") from None
    except ImportError as exc:
        raise ConfigError(
            f"the driver for {url.drivername!r} is not installed ({exc.name or exc}); "
            "install it, for example pip install 'reaper[postgresql]'"
        ) from None
    except ArgumentError as exc:
        raise ConfigError(f"invalid REAPER_DATABASE_URL={safe}: {exc}") from None


def _first_line(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip() or type(original).__name__
    return text.splitlines()[0]


def error_kind(exc: SQLAlchemyError) -> str:
    """Return a short, bounded label for a database error (used in logs and metric labels)."""
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
        raise DatabaseError(message, kind=error_kind(exc)) from exc
