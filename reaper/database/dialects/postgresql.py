"""PostgreSQL.

- Sessions: ``lock_timeout``, ``statement_timeout`` and ``TimeZone=UTC`` as connection options (after
  the URL's own ``options``), and ``application_name`` set to who this process is, so that
  ``pg_stat_activity`` shows who is running.
- The run lock: a session advisory lock, on a key drawn from the lock's name; ``pg_locks`` names the holder.
- Text columns hold the database's encoding.
- Load: ``active_sessions`` (client backends that are not idle) and ``oldest_xact_seconds`` (the age of
  the oldest open transaction), from ``pg_stat_activity``, leaving out this reaper's own sessions
  (its lock's session sits in a transaction for the whole run). Other users' sessions show their
  state only to a login with ``pg_read_all_stats``.
- Lag: on a replica, ``now() - pg_last_xact_replay_timestamp()`` while received WAL waits to be
  replayed (0 when all of it is); on a primary, ``replay_lag`` of each standby in ``pg_stat_replication``.
- Errors: by SQLSTATE (and a connection that failed, which has none).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import ARRAY, Column, Table, and_, any_, literal, text
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import NullType

from reaper.database.dialects.base import Lag, SessionLockDialect, identity, whole_units
from reaper.database.textfit import TextFit, declared_chars, python_codec

if TYPE_CHECKING:
    from reaper.database.connection import SessionLimits

APPLICATION_NAME_LIMIT = 63
LOAD_NAMES = ("active_sessions", "oldest_xact_seconds")
# Lock conflicts worth retrying: deadlock, lock_timeout, serialization failure.
LOCK_STATES = {"40P01", "55P03", "40001"}
# Refusals that no retry mends: a wrong password or login, a missing privilege, no such database (3D000).
ACCESS_STATES = {"28000", "28P01", "42501", "3D000"}
# A login refused while connecting: libpq gives no SQLSTATE then, only the server's message (in English
# unless the server's lc_messages says otherwise).
LOGIN_REFUSALS = ("password authentication failed", "no pg_hba.conf entry", "pg_hba.conf rejects connection",
                  "does not exist")  # role "x" / database "x" does not exist
# The server is shutting down or starting (57P01-57P03); class 08 is every connection exception.
UNREACHABLE_STATES = {"57P01", "57P02", "57P03"}
CODECS = {"koi8r": "koi8-r", "koi8u": "koi8-u"}

# Both ages are the server's own moments: a client clock that is off would distort them.
_LOAD = text(
    "SELECT count(*) FILTER (WHERE state <> 'idle'), "
    "COALESCE(EXTRACT(EPOCH FROM max(clock_timestamp() - xact_start)), 0) "
    "FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
    "AND application_name IS DISTINCT FROM :me"
)
# Without pg_read_all_stats, the state and times of other users' sessions and standbys read as null.
_SEES_ALL = text("SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')")
_REPLICA = text(
    "SELECT pg_is_in_recovery(), (SELECT count(*) FROM pg_stat_wal_receiver), "
    "pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn(), "
    "EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())"
)
# replay_lag keeps its last figure for a while after a standby has caught up: none is left then.
_STANDBYS = text(
    "SELECT application_name, state, "
    "CASE WHEN replay_lsn = sent_lsn THEN 0 ELSE EXTRACT(EPOCH FROM replay_lag) END FROM pg_stat_replication"
)
_HOLDER = text(
    "SELECT a.pid, a.application_name, a.client_addr FROM pg_locks l "
    "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
    "AND l.classid::bigint = :high AND l.objid::bigint = :low"
)
_HELD = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid() "
    "AND classid::bigint = :high AND objid::bigint = :low"
)
_DECLARED = text(
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
    "WHERE a.attrelid = CAST(quote_ident(:name) AS regclass) AND a.attnum > 0 AND NOT a.attisdropped"
)

# A plain table's pages; none for a partitioned table or one with inheritance children, whose rows lie
# in other relations' pages (each its own ctid space).
_PAGES = text(
    "SELECT CASE WHEN c.relkind = 'r' AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = c.oid) "
    "THEN pg_relation_size(c.oid) / current_setting('block_size')::bigint END "
    "FROM pg_class c WHERE c.oid = CAST(:name AS regclass)"
)


class PostgreSQL(SessionLockDialect):
    """PostgreSQL, through psycopg."""

    name = "postgresql"
    drivers = ("psycopg",)
    standbys = "pg_stat_replication"
    # Each rule's status test on every row made the opening count three times a plain count's time; one
    # hash per row to its status group, and the tests once per group, halved it (10 M rows: 1.9 s to 0.95 s).
    counts_by_status = True
    # 1 M rows with the recommended indexes, 10 % and 20 % of them past their retention: the walk along
    # the primary key took 1.03-1.16 s and 0.91-1.43 s, the index ranges 1.35-1.60 s and 1.41-2.01 s; at
    # 5 % they were even (about 1.0-1.2 s each).
    dense_share = 0.1
    # Reading 30,000 deleted ids back cost about 0.1 s of Python (driver rows, then reaper's), a tenth of
    # a purge of 3 % of 1 M rows along an index: PostgreSQL counts them instead.
    summarises_writes = True
    # ``c1 IS NULL`` is no equality to PostgreSQL's planner: ordered by id alone, a batch of the null range
    # of (status, c1, id) sorted the range or walked the primary key and filtered every row it met.
    orders_null_range_by_column = True

    def engine_options(self, url: URL, limits: SessionLimits) -> dict[str, Any]:
        """The limits, the time zone and the application name as connection options; a ping before each checkout."""
        options = (
            f"-c lock_timeout={whole_units(limits.lock_timeout_seconds, 1000)} "
            f"-c statement_timeout={whole_units(limits.statement_timeout_seconds, 1000)} -c TimeZone=UTC"
        )
        given = url.query.get("options")
        if isinstance(given, str):  # connect_args win over the URL's own: keep the URL's, ours last (they win)
            options = f"{given} {options}"
        connect_args: dict[str, Any] = {"options": options, "application_name": identity()[:APPLICATION_NAME_LIMIT]}
        if "connect_timeout" not in url.query:  # connect_args win over the URL's own
            connect_args["connect_timeout"] = limits.connect_timeout_seconds
        return {"pool_pre_ping": True, "connect_args": connect_args}

    def table_pages(self, conn: Connection, table: Table) -> int | None:
        """The table's pages on PostgreSQL 14 and later (a TID Range Scan reads a range of them), for a
        plain table (not partitioned, no inheritance children)."""
        if (conn.dialect.server_version_info or (0,)) < (14,):
            return None
        pages = conn.execute(_PAGES, {"name": conn.dialect.identifier_preparer.format_table(table)}).scalar()
        return None if pages is None else int(pages)

    def within_pages(self, first: int, stop: int) -> ColumnElement[bool]:
        """``ctid >= '(first,0)' AND ctid < '(stop,0)'``: every row version on those pages."""
        pages = text("ctid >= CAST(:first_page AS tid) AND ctid < CAST(:stop_page AS tid)")
        return and_(pages.bindparams(first_page=f"({first},0)", stop_page=f"({stop},0)"))

    def planned_rows(self, conn: Connection, query: Select[Any]) -> float | None:
        """The ``Plan Rows`` of ``EXPLAIN (FORMAT JSON) query``: from the table's statistics, scaled to its
        size now (a table never analyzed gets default selectivities, far below any share that counts)."""
        compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params).scalar_one()
        return float(plan[0]["Plan"]["Plan Rows"])

    def one_of(self, column: Column[Any], values: Sequence[Any]) -> ColumnElement[bool]:
        """``column = ANY(:values)``, the batch's ids bound as one array.

        Bound one by one, a batch of 8,000 ids took about 30 ms to render, and psycopg 50 ms more to turn
        into ``$n`` placeholders (profiled: a fail of 50,000 zombies along an index at 1 M rows, 2.0 s in
        all, 1.5-1.6 s bound as an array and fetched at once); the server reads an ``IN`` list as this
        array anyway.
        """
        if isinstance(column.type, NullType):  # a type SQLAlchemy does not know has no array type to bind as
            return column.in_(values)
        listed: ColumnElement[bool] = column == any_(literal(list(values), ARRAY(column.type)))
        return listed

    def check_driver_arguments(self, engine: Engine, arguments: Mapping[str, Any], named: Sequence[str]) -> None:
        """The arguments psycopg passes on to libpq, checked by libpq's own list of names."""
        if engine.dialect.driver != "psycopg":
            return
        from psycopg.conninfo import make_conninfo  # psycopg is optional: imported once it is the driver

        try:
            make_conninfo("", **{key: value for key, value in arguments.items() if key not in named})
        except engine.dialect.loaded_dbapi.Error as exc:
            raise ValueError(str(exc)) from None

    def keep_session_open(self, conn: Connection) -> None:
        """No ``idle_session_timeout`` for the lock's idle session (it came with PostgreSQL 14)."""
        if (conn.dialect.server_version_info or (0,)) >= (14,):
            conn.execute(text("SET SESSION idle_session_timeout = 0"))

    def try_lock(self, conn: Connection, name: str) -> bool:
        """``pg_try_advisory_lock`` on the name's key."""
        return bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": _advisory_key(name)}).scalar())

    def lock_holder(self, conn: Connection, name: str) -> str:
        """The holder's backend pid, application name and address."""
        who = conn.execute(_HOLDER, _key_halves(name)).first()
        return f"backend pid {who[0]} ({who[1] or 'no application name'} from {who[2]})" if who else "another session"

    def holds_lock(self, conn: Connection, name: str) -> bool:
        """Whether ``pg_locks`` shows the lock granted to this backend."""
        return bool(conn.execute(_HELD, _key_halves(name)).scalar())

    def release_lock(self, conn: Connection, name: str) -> None:
        """``pg_advisory_unlock``."""
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _advisory_key(name)})

    def text_fit(self, conn: Connection, column: Column[Any]) -> TextFit:
        """The declared length, in the database's encoding."""
        encoding = str(conn.execute(text("SHOW server_encoding")).scalar()).lower()
        # SQL_ASCII stores whatever bytes it is given; the client sends UTF-8.
        codec = "utf-8" if encoding in ("utf8", "sql_ascii") else python_codec(encoding, CODECS)
        return TextFit(max_chars=declared_chars(column), codec=codec)

    def declared_types(self, conn: Connection, table_name: str) -> dict[str, str]:
        """The declared types, from ``pg_attribute``."""
        return {str(name): str(declared) for name, declared in conn.execute(_DECLARED, {"name": table_name})}

    def check_load_names(self, names: Sequence[str]) -> None:
        """Only the two figures ``read_load`` computes."""
        for name in names:
            if name not in LOAD_NAMES:
                raise ValueError(f"unknown NAME {name!r} on PostgreSQL (known: {', '.join(LOAD_NAMES)})")

    def read_load(self, conn: Connection, names: Sequence[str]) -> dict[str, float | None]:
        """``active_sessions`` and ``oldest_xact_seconds``, other sessions than this reaper's."""
        active, oldest = conn.execute(_LOAD, {"me": identity()[:APPLICATION_NAME_LIMIT]}).one()
        return {name: value for name, value in zip(LOAD_NAMES, (active, oldest), strict=True) if name in names}

    def load_unseen(self, conn: Connection) -> str | None:
        """A login without ``pg_read_all_stats`` sees no state of other users' sessions, nor of standbys."""
        if conn.execute(_SEES_ALL).scalar():
            return None
        return (
            "--max-load, --critical-load and --max-replica-lag on PostgreSQL need the pg_read_all_stats role "
            "(GRANT pg_monitor TO <reaper's user>): without it other sessions and standbys show no state"
        )

    def replica_lag(self, conn: Connection) -> Lag:
        """The lag of a replica, read on the replica itself."""
        in_recovery, receivers, caught_up, seconds = conn.execute(_REPLICA).one()
        if not in_recovery:
            return Lag(None, "is not a replica (pg_is_in_recovery() is false)", lasting=True)
        if not receivers:
            return Lag(None, "reports no lag: its WAL receiver is not running (replication stopped)")
        if caught_up:  # all it received is replayed: the last replayed commit's age says nothing
            return Lag(0.0)
        if seconds is None:
            return Lag(None, "reports no lag: no transaction replayed yet")
        return Lag(max(float(seconds), 0.0))

    def standby_lag(self, conn: Connection) -> Lag:
        """The largest ``replay_lag`` of the standbys the primary lists in ``pg_stat_replication``."""
        rows = conn.execute(_STANDBYS).all()
        if not rows:
            return Lag(None, "lists no standby (replication stopped, or no standby connected)")
        lags = []
        for name, state, seconds in rows:
            if state != "streaming":
                return Lag(None, f"shows standby {name or '(unnamed)'!r} {state}, not streaming")
            lags.append(float(seconds or 0.0))  # no figure while streaming: caught up and idle
        return Lag(max(lags))

    def lock_conflict(self, exc: DBAPIError) -> bool:
        """Deadlock, lock time-out, serialization failure."""
        return _sqlstate(exc) in LOCK_STATES

    def access_denied(self, exc: DBAPIError) -> bool:
        """A refused login, a missing privilege."""
        if _sqlstate(exc) is None:
            return any(refusal in str(exc.orig) for refusal in LOGIN_REFUSALS)
        return _sqlstate(exc) in ACCESS_STATES

    def unreachable(self, exc: DBAPIError) -> bool:
        """A connection exception, a server shutting down, or a connection that failed (no SQLSTATE at all)."""
        state = _sqlstate(exc)
        if state is None:
            return isinstance(exc, OperationalError)
        return state.startswith("08") or state in UNREACHABLE_STATES

    def constraint_name(self, exc: DBAPIError) -> str | None:
        """The constraint's name, from the error's diagnostics."""
        diag = getattr(exc.orig, "diag", None)
        name = getattr(diag, "constraint_name", None)
        return str(name) if name else None


def _sqlstate(exc: DBAPIError) -> str | None:
    state = getattr(exc.orig, "sqlstate", None)
    return str(state) if state else None


def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _key_halves(name: str) -> dict[str, int]:
    """The two 32-bit halves ``pg_locks`` shows a 64-bit advisory key as."""
    key = _advisory_key(name)
    return {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF}
