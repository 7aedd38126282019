"""MySQL and MariaDB: one dialect (a ``mysql://`` and a ``mariadb://`` URL reach the same kind of server).

- Sessions: time zone UTC (so that ``TIMESTAMP`` columns compare in UTC whatever the server's zone),
  ``innodb_lock_wait_timeout`` in whole seconds, and the statement time-out: ``max_statement_time``
  (MariaDB, seconds to the microsecond) or ``max_execution_time`` (MySQL, milliseconds).
- The run lock: ``GET_LOCK`` on a session of its own; ``IS_USED_LOCK`` names the holder's connection.
- ``DELETE ... RETURNING`` on MariaDB, not on MySQL (SQLAlchemy tells them apart on the first connection).
- Values: ``TIMESTAMP`` stores UTC; ``BIT`` is an integer; ``SET`` is read as text, and a type
  SQLAlchemy does not know (geometry) as hex; text columns hold their character set, and the
  ``TEXT`` types count bytes (information_schema says which).
- InnoDB appends the primary key to every secondary index.
- Load: any global status variable (``SHOW GLOBAL STATUS``, e.g. ``Threads_running``, which counts the
  reading session itself), and ``history_list_length``, InnoDB's purge backlog: MariaDB's status
  variable ``Innodb_history_list_length`` (no privilege needed), else ``trx_rseg_history_len`` in
  ``information_schema.INNODB_METRICS`` (needs PROCESS).
- Lag: ``Seconds_Behind_Source`` (or ``_Master``) of ``SHOW REPLICA STATUS``, read on each replica: a
  primary does not know its replicas' lag.
- Errors: by the server's error number.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Table, bindparam, text
from sqlalchemy.engine import URL, Connection, Engine, Row
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import NullType, TypeEngine

from reaper.database.dialects.base import Lag, SessionLockDialect, whole_units
from reaper.database.exact_types import AsHex, AsText
from reaper.database.textfit import TextFit, declared_chars, python_codec

if TYPE_CHECKING:
    from reaper.database.connection import SessionLimits

MICROSECONDS = 1_000_000
LOCK_SESSION_IDLE_SECONDS = 7 * 86400
# Lock wait time-out and deadlock: worth retrying.
LOCK_ERRORS = {1205, 1213}
# Refusals that no retry mends: a wrong password, a missing privilege, a database that does not exist (1049).
ACCESS_ERRORS = {1044, 1045, 1049, 1142, 1227}
# What the server says of a row it will not take, that PyMySQL does not class as an integrity or data
# error: a column without a default (1364), a value it cannot hold (1366, 1292), a check (3819, 4025).
ROW_ERRORS = {1364, 1366, 1292, 3819, 4025}
# No server there (2002, 2003, 2005), or it dropped the session (2006, 2013; 1927 killed, 4031 idle too long).
UNREACHABLE_ERRORS = {2002, 2003, 2005, 2006, 2013, 1927, 4031}
CONSTRAINT = re.compile(r"CONSTRAINT `([^`]+)`")
HISTORY_LIST_LENGTH = "history_list_length"
MARIADB_HISTORY_STATUS = "Innodb_history_list_length"
# Character sets that Python's codecs spell otherwise; latin1 is in fact cp1252.
CODECS = {
    "latin1": "cp1252", "utf8": "utf-8", "utf8mb3": "utf-8", "utf8mb4": "utf-8", "ucs2": "utf-16-be",
    "utf16": "utf-16-be", "utf16le": "utf-16-le", "utf32": "utf-32-be", "latin5": "iso8859-9",
    "latin7": "iso8859-13", "greek": "iso8859-7", "hebrew": "iso8859-8", "sjis": "shift_jis",
    "ujis": "euc_jp", "eucjpms": "euc_jp", "euckr": "euc_kr", "macroman": "mac-roman", "macce": "mac-latin2",
    "tis620": "tis-620", "koi8r": "koi8-r", "koi8u": "koi8-u",
}
BMP_ONLY = {"utf8", "utf8mb3", "ucs2"}  # no character beyond U+FFFF
TEXT_TYPES = ("tinytext", "text", "mediumtext", "longtext")

_STATUS = text("SHOW GLOBAL STATUS WHERE Variable_name IN :names").bindparams(bindparam("names", expanding=True))
_INNODB_HISTORY = text("SELECT `count` FROM information_schema.INNODB_METRICS WHERE name = 'trx_rseg_history_len'")
_TEXT_COLUMN = text(
    "SELECT DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, CHARACTER_OCTET_LENGTH, CHARACTER_SET_NAME "
    "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table AND COLUMN_NAME = :column"
)
_DECLARED = text(
    "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :name"
)


class MySQL(SessionLockDialect):
    """MySQL and MariaDB, through PyMySQL (or mysqlclient)."""

    name = "mysql"
    drivers = ("pymysql", "MySQLdb")

    def engine_options(self, url: URL, limits: SessionLimits) -> dict[str, Any]:
        """A ping before each checkout, and the connect time-out."""
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": limits.connect_timeout_seconds}}

    def set_up_session(self, dbapi_connection: Any, limits: SessionLimits) -> None:
        """UTC, the lock wait and the statement time-out, each in the unit of the server at hand."""
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

    def keep_session_open(self, conn: Connection) -> None:
        """A week of ``wait_timeout`` for the lock's idle session."""
        conn.execute(text(f"SET SESSION wait_timeout = {LOCK_SESSION_IDLE_SECONDS}"))

    def try_lock(self, conn: Connection, name: str) -> bool:
        """``GET_LOCK`` without waiting."""
        return conn.execute(text("SELECT GET_LOCK(:name, 0)"), {"name": name}).scalar() == 1

    def lock_holder(self, conn: Connection, name: str) -> str:
        """The holder's connection id, and its user and host when the process list shows them."""
        holder = conn.execute(text("SELECT IS_USED_LOCK(:name)"), {"name": name}).scalar()
        if holder is None:
            return "another session (it has just released the lock)"
        who = conn.execute(
            text("SELECT USER, HOST FROM information_schema.PROCESSLIST WHERE ID = :id"), {"id": holder}
        ).first()
        return f"connection {holder} ({who[0]}@{who[1]})" if who else f"connection {holder}"

    def holds_lock(self, conn: Connection, name: str) -> bool:
        """Whether the lock's holder is this very connection."""
        return bool(conn.execute(text("SELECT IS_USED_LOCK(:name) = CONNECTION_ID()"), {"name": name}).scalar())

    def release_lock(self, conn: Connection, name: str) -> None:
        """``RELEASE_LOCK``."""
        conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})

    def deletes_returning(self, engine: Engine) -> bool:
        """MariaDB's ``DELETE ... RETURNING``; MySQL has none."""
        if engine.dialect.server_version_info is None:  # SQLAlchemy tells MariaDB from MySQL once connected
            with engine.connect():
                pass
        return bool(engine.dialect.delete_returning)

    def range_isolation(self, conn: Connection) -> str | None:
        """READ COMMITTED, where the binary log allows it: at InnoDB's REPEATABLE READ a range's DELETE
        locks every row it scans, and the gaps between, until its commit, so the application's writes to
        rows it leaves would wait on it; at READ COMMITTED it locks only the rows it deletes (each write
        re-checks its rule's condition, so no stronger isolation is needed).

        A server logging statements (``binlog_format=STATEMENT``) refuses InnoDB writes at READ
        COMMITTED: there the default stays.
        """
        logged = conn.exec_driver_sql("SELECT @@SESSION.binlog_format, @@GLOBAL.log_bin").one()
        conn.rollback()
        return None if str(logged[0]).upper() == "STATEMENT" and int(logged[1]) else "READ COMMITTED"

    def exact_type(self, column_type: TypeEngine[Any]) -> TypeEngine[Any] | None:
        """``BIT`` as it is (an integer, whose text form is raw bytes); ``SET`` as text; an unknown type as hex
        (geometry has no text form here)."""
        # loaded with a MySQL engine already: imported here, so that PostgreSQL and SQLite never load it
        from sqlalchemy.dialects import mysql

        if isinstance(column_type, mysql.BIT):
            return column_type
        if isinstance(column_type, NullType):
            return AsHex()
        return AsText() if isinstance(column_type, mysql.SET) else None

    def text_fit(self, conn: Connection, column: Column[Any]) -> TextFit:
        """The column's character set and size, from information_schema (the ``TEXT`` types count bytes)."""
        described = conn.execute(_TEXT_COLUMN, {"table": column.table.name, "column": column.name}).first()
        if described is None or described[3] is None:  # not a text column (or hidden from us): the reflected length
            return TextFit(max_chars=declared_chars(column))
        data_type, characters, octets = str(described[0]).lower(), described[1], described[2]
        charset = str(described[3]).lower()
        codec = python_codec(charset, CODECS)
        bmp_only = charset in BMP_ONLY
        if data_type in TEXT_TYPES:  # their sizes count bytes
            return TextFit(max_bytes=int(octets), codec=codec, bmp_only=bmp_only)
        return TextFit(max_chars=int(characters) if characters else None, codec=codec, bmp_only=bmp_only)

    def integer_bits(self, column_type: TypeEngine[Any]) -> int:
        """``MEDIUMINT`` and ``TINYINT`` besides the standard sizes."""
        from sqlalchemy.dialects import mysql  # as in exact_type

        if isinstance(column_type, mysql.MEDIUMINT):
            return 24
        return 8 if isinstance(column_type, mysql.TINYINT) else super().integer_bits(column_type)

    def appends_primary_key(self, table: Table, id_column: Column[Any]) -> bool:
        """InnoDB's secondary indexes hold the primary key."""
        return True

    def declared_types(self, conn: Connection, table_name: str) -> dict[str, str]:
        """The declared types, from information_schema."""
        return {str(name): str(declared) for name, declared in conn.execute(_DECLARED, {"name": table_name})}

    def check_load_names(self, names: Sequence[str]) -> None:
        """Any name may be a status variable: the server says which are (see ``read_load``)."""

    def read_load(self, conn: Connection, names: Sequence[str]) -> dict[str, float | None]:
        """Global status variables, and ``history_list_length``."""
        asked = [MARIADB_HISTORY_STATUS if name == HISTORY_LIST_LENGTH else name for name in names]
        status = {str(name).lower(): value for name, value in conn.execute(_STATUS, {"names": asked})}
        values: dict[str, float | None] = {}
        for name, key in zip(names, asked, strict=True):
            if key.lower() in status:
                values[name] = _number(status[key.lower()])
            elif name == HISTORY_LIST_LENGTH:  # MySQL has no such status variable
                values[name] = _number(conn.execute(_INNODB_HISTORY).scalar())
        return values

    def replica_lag(self, conn: Connection) -> Lag:
        """The largest ``Seconds_Behind_*`` of the replica's replication channels."""
        rows = _replica_status(conn)
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

    def lock_conflict(self, exc: DBAPIError) -> bool:
        """Lock wait time-out, deadlock."""
        return _code(exc) in LOCK_ERRORS

    def access_denied(self, exc: DBAPIError) -> bool:
        """A wrong password, a missing privilege."""
        return _code(exc) in ACCESS_ERRORS

    def unreachable(self, exc: DBAPIError) -> bool:
        """No server there, or it dropped the session."""
        return _code(exc) in UNREACHABLE_ERRORS

    def refuses_row(self, exc: DBAPIError) -> bool:
        """A column without a default, a value the column cannot hold, a check."""
        return _code(exc) in ROW_ERRORS

    def constraint_name(self, exc: DBAPIError) -> str | None:
        """The name the message gives (``CONSTRAINT `fk_outputs_task` FOREIGN KEY ...``)."""
        named = CONSTRAINT.search(str(exc.orig))
        return named.group(1) if named else None


def _code(exc: DBAPIError) -> int:
    """The server's error number, which the driver gives as its error's first argument (0: none)."""
    args = getattr(exc.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else 0


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _replica_status(conn: Connection) -> Sequence[Row[Any]]:
    try:
        return conn.execute(text("SHOW REPLICA STATUS")).all()
    except DBAPIError:  # before MariaDB 10.5 and MySQL 8.0.22
        return conn.execute(text("SHOW SLAVE STATUS")).all()


def _first(row: Mapping[Any, Any], *keys: str) -> Any:
    return next((row[key] for key in keys if key in row), None)
