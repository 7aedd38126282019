"""One module per database, behind one interface (``base.Dialect``); ``dialect_of`` picks it.

Everything reaper does the same way on every database is written once, in SQLAlchemy's terms. What
a database does its own way is asked of its dialect and of nothing else: ``dialect_of(engine)`` (or
of a connection, a URL, a backend's name as SQLAlchemy spells it) is the one way to ask which
database is at hand, and no other module compares a database's name. A driver's error is read by the
dialect of its driver (``dialect_for_error``), when the database boundary converts it
(``reaper.database.connection.database_errors``).

Supporting another database takes one module here and its test server (``tests/servers.py``, then
``TEST_DATABASES``). The module defines a subclass of ``Dialect`` (of ``SessionLockDialect`` when the
database's sessions take named locks that end with them) which provides:

- ``name`` and ``drivers``: the backend's name as SQLAlchemy spells it, and the DB-API modules whose
  errors the dialect reads;
- its sessions' set-up: ``engine_options`` and ``set_up_session`` give every session the lock and
  statement time-outs of ``SessionLimits`` and the UTC time zone (``check_driver_arguments``: a
  driver that checks its arguments only when it connects);
- ``run_lock``: one reaper at a time per table (on a ``SessionLockDialect``: ``try_lock``,
  ``lock_holder``, ``holds_lock``, ``release_lock``, ``keep_session_open``);
- its errors: ``lock_conflict`` (retried), ``access_denied`` (fatal), ``unreachable``,
  ``refuses_row`` and ``constraint_name``;
- what differs from the plain SQL that the defaults write, where it does: ``deletes_returning``,
  ``counts_by_status`` and ``filters_aggregates`` (how the opening count is grouped and written); the
  timestamps (``before``, ``since``, ``as_stored``, ``database_file``); the values
  (``exact_type``, ``text_fit``, ``integer_bits``, ``declared_types``); the indexes
  (``indexes``, ``appends_primary_key``, ``dense_share``);
- for the throttle, when the server tells its load or its replicas' lag: ``check_load_names``,
  ``read_load``, ``load_unseen``, ``replica_lag``, ``standbys`` and ``standby_lag`` (the defaults
  refuse load limits, and name the database).

It is then added to ``DIALECTS`` below, under each name SQLAlchemy gives the backend, and
``tests/test_dialects.py`` runs on it.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError

from reaper.database.dialects.base import Dialect, Lag, RunLock, UnknownDatabase
from reaper.database.dialects.mysql import MySQL
from reaper.database.dialects.postgresql import PostgreSQL
from reaper.database.dialects.sqlite import SQLite

__all__ = ["DIALECTS", "Dialect", "Lag", "RunLock", "dialect_for_error", "dialect_of"]

_MYSQL = MySQL()
# Each dialect by every backend name SQLAlchemy gives it.
DIALECTS: dict[str, Dialect] = {"sqlite": SQLite(), "mysql": _MYSQL, "mariadb": _MYSQL, "postgresql": PostgreSQL()}


def dialect_of(source: Engine | Connection | URL | str) -> Dialect:
    """The dialect of an engine, a connection, a URL, or a backend named as SQLAlchemy names it (``"mariadb"``)."""
    if isinstance(source, Engine | Connection):
        name = source.dialect.name
    elif isinstance(source, URL):
        name = source.get_backend_name()
    else:
        name = source
    return DIALECTS.get(name) or UnknownDatabase(name)


def dialect_for_error(exc: DBAPIError) -> Dialect:
    """The dialect whose driver raised the error that SQLAlchemy wrapped in ``exc``."""
    readers = (dialect for dialect in dict.fromkeys(DIALECTS.values()) if dialect.reads_error(exc))
    return next(readers, UnknownDatabase(type(exc.orig).__module__))
