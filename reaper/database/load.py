"""What a server says about its own load and about its replicas' lag.

Load, read on a connection of the run:
- MySQL/MariaDB: any global status variable (``SHOW GLOBAL STATUS``, e.g. ``Threads_running``, which
  counts the reading session itself), and ``history_list_length``, InnoDB's purge backlog: MariaDB's
  status variable ``Innodb_history_list_length`` (no privilege needed), else ``trx_rseg_history_len``
  in ``information_schema.INNODB_METRICS`` (needs PROCESS);
- PostgreSQL: ``active_sessions`` (client backends that are not idle) and ``oldest_xact_seconds`` (the
  age of the oldest open transaction), from ``pg_stat_activity``, leaving out this reaper's own
  sessions (its lock's session sits in a transaction for the whole run).

Lag: ``Seconds_Behind_Source`` (or ``_Master``) of ``SHOW REPLICA STATUS`` on a MySQL/MariaDB
replica; on a PostgreSQL replica, ``now() - pg_last_xact_replay_timestamp()`` while received WAL
waits to be replayed (0 when all of it is); on a PostgreSQL primary, ``replay_lag`` of each standby in
``pg_stat_replication``. A replica that shows no figure (replication stopped, not a replica, cannot be
reached) gives a ``Lag`` without seconds, and says why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import DBAPIError

from reaper.database.connection import backend_of, database_errors, identity, is_access_denied
from reaper.errors import DatabaseError

HISTORY_LIST_LENGTH = "history_list_length"
MARIADB_HISTORY_STATUS = "Innodb_history_list_length"
POSTGRES_LOAD_NAMES = ("active_sessions", "oldest_xact_seconds")

_MYSQL_STATUS = text("SHOW GLOBAL STATUS WHERE Variable_name IN :names").bindparams(
    bindparam("names", expanding=True)
)
_INNODB_HISTORY = text("SELECT `count` FROM information_schema.INNODB_METRICS WHERE name = 'trx_rseg_history_len'")
# Both ages are the server's own moments: a client clock that is off would distort them.
_POSTGRES_LOAD = text(
    "SELECT count(*) FILTER (WHERE state <> 'idle'), "
    "COALESCE(EXTRACT(EPOCH FROM max(clock_timestamp() - xact_start)), 0) "
    "FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
    "AND application_name IS DISTINCT FROM :me"
)
# Without pg_read_all_stats, the state and times of other users' sessions and standbys read as null.
_POSTGRES_SEES_ALL = text("SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')")
_POSTGRES_REPLICA = text(
    "SELECT pg_is_in_recovery(), (SELECT count(*) FROM pg_stat_wal_receiver), "
    "pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn(), "
    "EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())"
)
# replay_lag keeps its last figure for a while after a standby has caught up: none is left then.
_POSTGRES_STANDBYS = text(
    "SELECT application_name, state, "
    "CASE WHEN replay_lsn = sent_lsn THEN 0 ELSE EXTRACT(EPOCH FROM replay_lag) END FROM pg_stat_replication"
)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_load(conn: Connection, names: Sequence[str]) -> dict[str, float | None]:
    """Return the value of each of ``names`` that the server knows (``None``: not a number)."""
    if backend_of(conn.engine.url) == "postgresql":
        active, oldest = conn.execute(_POSTGRES_LOAD, {"me": identity()[:63]}).one()
        return {name: value for name, value in zip(POSTGRES_LOAD_NAMES, (active, oldest), strict=True)
                if name in names}
    asked = [MARIADB_HISTORY_STATUS if name == HISTORY_LIST_LENGTH else name for name in names]
    status = {str(name).lower(): value for name, value in conn.execute(_MYSQL_STATUS, {"names": asked})}
    values: dict[str, float | None] = {}
    for name, key in zip(names, asked, strict=True):
        if key.lower() in status:
            values[name] = _number(status[key.lower()])
        elif name == HISTORY_LIST_LENGTH:  # MySQL has no such status variable
            values[name] = _number(conn.execute(_INNODB_HISTORY).scalar())
    return values


def postgres_sees_all_sessions(conn: Connection) -> bool:
    """Whether this login may read the state of every session and standby (``pg_read_all_stats``)."""
    return bool(conn.execute(_POSTGRES_SEES_ALL).scalar())


@dataclass(frozen=True)
class Lag:
    """A replica's lag in seconds, or why there is no figure (``lasting``: no wait will mend it)."""

    seconds: float | None
    problem: str = ""
    lasting: bool = False


def _mysql_replica_status(conn: Connection) -> Sequence[Row[Any]]:
    try:
        return conn.execute(text("SHOW REPLICA STATUS")).all()
    except DBAPIError:  # before MariaDB 10.5 and MySQL 8.0.22
        return conn.execute(text("SHOW SLAVE STATUS")).all()


def _first(row: Mapping[Any, Any], *keys: str) -> Any:
    return next((row[key] for key in keys if key in row), None)


def mysql_replica_lag(conn: Connection) -> Lag:
    """The lag of a MySQL/MariaDB replica: the largest ``Seconds_Behind_*`` of its replication channels."""
    rows = _mysql_replica_status(conn)
    if not rows:
        return Lag(None, "is not a replica (SHOW REPLICA STATUS is empty)", lasting=True)
    lags = []
    for row in rows:
        fields = row._mapping
        seconds = _first(fields, "Seconds_Behind_Source", "Seconds_Behind_Master")
        if seconds is None:
            io = _first(fields, "Replica_IO_Running", "Slave_IO_Running")
            sql = _first(fields, "Replica_SQL_Running", "Slave_SQL_Running")
            return Lag(None, f"reports no lag: replication stopped (IO thread {io}, SQL thread {sql})")
        lags.append(float(seconds))
    return Lag(max(lags))


def postgres_replica_lag(conn: Connection) -> Lag:
    """The lag of a PostgreSQL replica, read on the replica itself."""
    in_recovery, receivers, caught_up, seconds = conn.execute(_POSTGRES_REPLICA).one()
    if not in_recovery:
        return Lag(None, "is not a replica (pg_is_in_recovery() is false)", lasting=True)
    if not receivers:
        return Lag(None, "reports no lag: its WAL receiver is not running (replication stopped)")
    if caught_up:  # all it received is replayed: the last replayed commit's age says nothing
        return Lag(0.0)
    if seconds is None:
        return Lag(None, "reports no lag: no transaction replayed yet")
    return Lag(max(float(seconds), 0.0))


def postgres_standby_lag(conn: Connection) -> Lag:
    """The largest ``replay_lag`` of the standbys a PostgreSQL primary lists in ``pg_stat_replication``."""
    rows = conn.execute(_POSTGRES_STANDBYS).all()
    if not rows:
        return Lag(None, "lists no standby (replication stopped, or no standby connected)")
    lags = []
    for name, state, seconds in rows:
        if state != "streaming":
            return Lag(None, f"shows standby {name or '(unnamed)'!r} {state}, not streaming")
        lags.append(float(seconds or 0.0))  # no figure while streaming: caught up and idle
    return Lag(max(lags))


def lag_reader(engine: Engine, read: Callable[[Connection], Lag], secrets: Iterable[str]) -> Callable[[], Lag]:
    """Return a callable that reads a lag on ``engine``; an error becomes a ``Lag`` that says what went wrong."""

    def read_lag() -> Lag:
        try:
            with database_errors("cannot be read", secrets), engine.connect() as conn:
                return read(conn)
        except DatabaseError as exc:
            return Lag(None, str(exc), lasting=is_access_denied(exc.__cause__ or exc))

    return read_lag
