"""Real MariaDB and PostgreSQL servers for the test suite, run as plain processes on 127.0.0.1.

Besides the servers the suite shares, a primary with a replica of it, for each database
(``start_mariadb_pair``, ``start_postgresql_pair``): MariaDB's replica reads the primary's binary log
(``CHANGE MASTER TO`` on 127.0.0.1), PostgreSQL's streams its WAL (``pg_basebackup -R``).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, TypeAlias

import psycopg
import pymysql
from psycopg import sql
from psycopg.rows import TupleRow

_MyConn: TypeAlias = "pymysql.connections.Connection[pymysql.cursors.Cursor]"
HOST, USER, PASSWORD = "127.0.0.1", "reaper", "reaper-secret-pw"
REPLICATION_USER, REPLICATION_PASSWORD = "repl", "repl-secret-pw"
TIMEOUT = 30.0
IS_ROOT = os.geteuid() == 0
PG_USER = "postgres" if IS_ROOT else None  # PostgreSQL refuses to run as root
TMP_ROOT = os.environ.get("TEST_SERVER_TMPDIR", "/tmp")  # /dev/shm makes file creation far faster
# For mariadb-install-db and mariadbd. --no-defaults skips Debian's my.cnf, so its utf8mb4
# defaults are restated (the built-in default is latin1). Small and non-durable for speed.
MARIADB_OPTS = [
    "--no-defaults", *(["--user=root"] if IS_ROOT else []),
    "--innodb-log-file-size=32M", "--innodb-buffer-pool-size=128M",
    "--innodb-flush-log-at-trx-commit=2", "--innodb-doublewrite=0",
    "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci",
]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _run(cmd: list[str], as_pg: bool = False, timeout: float = TIMEOUT) -> None:
    """Run a helper command (as the postgres user if asked); raise RuntimeError if it fails."""
    user = PG_USER if as_pg else None
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/",
                         stdin=subprocess.DEVNULL, start_new_session=True, user=user,
                         group=user, extra_groups=[] if user else None)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n"
                           f"{res.stdout[-3000:]}{res.stderr[-3000:]}")


def _pg_bin(tool: str) -> str:
    """Return the path of a PostgreSQL tool of the highest version in /usr/lib/postgresql."""
    dirs = [d for d in glob.glob("/usr/lib/postgresql/*/bin") if d.split("/")[-2].isdigit()]
    if not dirs:
        raise RuntimeError("no PostgreSQL found under /usr/lib/postgresql/*/bin")
    return os.path.join(max(dirs, key=lambda d: int(d.split("/")[-2])), tool)


@dataclass
class Server:
    """A database server process with a password login (`user`) for tests over TCP."""

    name: str
    host: str
    port: int
    user: str
    password: str
    datadir: str = field(default="", repr=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _removed: bool = field(default=False, repr=False)
    _log_name: ClassVar[str] = "server.log"
    _run_as: ClassVar[str | None] = None  # the OS user the server process runs as
    _kill_signals: ClassVar[tuple[signal.Signals, ...]] = (signal.SIGTERM, signal.SIGKILL)

    def admin(self, statement: str) -> list[tuple[object, ...]]:
        """Run one statement as the server's administrator; return its rows (none for a command)."""
        conn = self._admin()
        try:
            if isinstance(conn, psycopg.Connection):
                cursor = conn.execute(statement)
                return list(cursor.fetchall()) if cursor.description else []
            with conn.cursor() as cur:
                cur.execute(statement)
                return list(cur.fetchall())
        finally:
            conn.close()

    def url(self, database: str) -> str:
        """Return the SQLAlchemy URL for the test login and `database`."""
        if self.name == "mariadb":
            return (f"mysql+pymysql://{self.user}:{self.password}@{self.host}:{self.port}"
                    f"/{database}?charset=utf8mb4")
        return f"postgresql+psycopg://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def create_database(self, database: str) -> None:
        """Drop `database` if it exists, then create it for the test login."""
        raise NotImplementedError

    def drop_database(self, database: str) -> None:
        """Drop `database` if it exists, disconnecting its sessions first."""
        raise NotImplementedError

    def add_user(self, database: str, user: str, privileges: str) -> str:
        """Create login `user` with only `privileges` (e.g. "SELECT, UPDATE") on the tables of
        `database`, and return its URL (password: the test login's)."""
        raise NotImplementedError

    def kill_sessions(self, user: str) -> int:
        """End every session of login `user` from another connection, as a DBA would; return how many."""
        raise NotImplementedError

    def _url_for(self, user: str, database: str) -> str:
        return self.url(database).replace(f"//{self.user}:", f"//{user}:", 1)

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _shutdown_command(self) -> list[str]:
        raise NotImplementedError

    def _admin(self) -> _MyConn | psycopg.Connection[TupleRow]:
        raise NotImplementedError

    def _ping(self) -> bool:
        try:
            self._admin().close()
        except (pymysql.err.Error, psycopg.Error):
            return False
        return True

    def start(self) -> None:
        """Start the server on the same port and data dir; wait (bounded) until it answers."""
        if self._proc is not None:
            return
        log_path = os.path.join(self.datadir, self._log_name)
        with open(log_path, "ab") as log:
            self._proc = proc = subprocess.Popen(
                self._command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/",
                start_new_session=True, user=self._run_as, group=self._run_as,
                extra_groups=[] if self._run_as else None)
        deadline = time.monotonic() + TIMEOUT
        while not self._ping():
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop_process()
                with open(log_path, errors="replace") as f:
                    tail = "".join(f.readlines()[-30:])
                raise RuntimeError(f"{self.name} did not start (exit code {proc.returncode});"
                                   f" tail of {log_path}:\n{tail}")
            time.sleep(0.05)

    def stop_process(self) -> None:
        """Stop the server process but keep the data dir; a no-op if it is not running."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        steps: list[tuple[signal.Signals | None, float]] = []
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            _run(self._shutdown_command(), as_pg=self._run_as is not None)
            steps.append((None, TIMEOUT))  # asked politely: wait for it to exit
        for sig, seconds in steps + [(sig, 10.0) for sig in self._kill_signals]:
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=seconds)
                return

    def stop(self) -> None:
        """Stop the server and remove its data dir; idempotent."""
        if self._removed:
            return
        try:
            self.stop_process()
        finally:
            self._removed = True
            shutil.rmtree(self.datadir, ignore_errors=True)


@dataclass
class _MariaDB(Server):
    _log_name = "err.log"
    binary_log: tuple[str, ...] = ("--skip-log-bin",)  # a primary: --server-id, --log-bin, --binlog-format

    def _admin(self) -> _MyConn:
        # ssl_disabled: otherwise PyMySQL builds a TLS context on every connect (~40 ms).
        return pymysql.connect(unix_socket=f"{self.datadir}/mysqld.sock", user="root",
                               connect_timeout=2, autocommit=True, ssl_disabled=True,
                               init_command="SET lock_wait_timeout = 10")

    def _command(self) -> list[str]:
        d = self.datadir
        return ["/usr/sbin/mariadbd", *MARIADB_OPTS, f"--datadir={d}", f"--socket={d}/mysqld.sock",
                f"--pid-file={d}/mysqld.pid", f"--log-error={d}/{self._log_name}",
                f"--port={self.port}", "--skip-networking=0", f"--bind-address={self.host}",
                "--skip-name-resolve", *self.binary_log, "--innodb-buffer-pool-dump-at-shutdown=0",
                "--innodb-buffer-pool-load-at-startup=0"]

    def _shutdown_command(self) -> list[str]:
        # --shutdown-timeout=0: don't poll the pid file in 1 s steps; stop_process() waits instead.
        return ["mariadb-admin", "--no-defaults", "--protocol=socket", "--shutdown-timeout=0",
                f"--socket={self.datadir}/mysqld.sock", "-uroot", "shutdown"]

    def create_database(self, database: str) -> None:
        """Drop `database` if it exists, then create it (utf8mb4)."""
        self.drop_database(database)
        with self._admin() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {_backtick(database)} CHARACTER SET utf8mb4")

    def drop_database(self, database: str) -> None:
        """Kill the sessions using `database`, then drop it if it exists."""
        with self._admin() as conn, conn.cursor() as cur:
            cur.execute("SELECT id FROM information_schema.processlist"
                        " WHERE db = %s AND id <> CONNECTION_ID()", (database,))
            for (session,) in cur.fetchall():
                with contextlib.suppress(pymysql.err.OperationalError):  # already gone
                    cur.execute(f"KILL {int(session)}")
            cur.execute(f"DROP DATABASE IF EXISTS {_backtick(database)}")

    def add_user(self, database: str, user: str, privileges: str) -> str:
        """Create login `user` with only `privileges` on the tables of `database`; return its URL."""
        with self._admin() as conn, conn.cursor() as cur:
            for host in (HOST, "localhost"):
                cur.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY %s", (self.password,))
                cur.execute(f"GRANT {privileges} ON {_backtick(database)}.* TO '{user}'@'{host}'")
        return self._url_for(user, database)

    def kill_sessions(self, user: str) -> int:
        """KILL every session of login `user`; return how many."""
        with self._admin() as conn, conn.cursor() as cur:
            cur.execute("SELECT id FROM information_schema.processlist WHERE user = %s", (user,))
            sessions = [int(row[0]) for row in cur.fetchall()]
            for session in sessions:
                with contextlib.suppress(pymysql.err.OperationalError):  # already gone
                    cur.execute(f"KILL {session}")
        return len(sessions)


def _backtick(name: str) -> str:
    """Quote a MariaDB identifier."""
    return "`" + name.replace("`", "``") + "`"


@dataclass
class _PostgreSQL(Server):
    _run_as = PG_USER
    _kill_signals = (signal.SIGQUIT, signal.SIGKILL)  # SIGQUIT: immediate shutdown

    def _admin(self) -> psycopg.Connection[TupleRow]:
        return psycopg.connect(host=self.datadir, port=self.port, user="postgres",
                               dbname="postgres", autocommit=True, connect_timeout=2)

    def _command(self) -> list[str]:
        settings = {"listen_addresses": self.host, "port": self.port, "fsync": "off",
                    "unix_socket_directories": self.datadir, "synchronous_commit": "off",
                    "full_page_writes": "off"}
        return [_pg_bin("postgres"), "-D", self.datadir,
                *(arg for k, v in settings.items() for arg in ("-c", f"{k}={v}"))]

    def _shutdown_command(self) -> list[str]:
        return [_pg_bin("pg_ctl"), "-D", self.datadir, "-m", "fast", "-w", "stop"]

    def create_database(self, database: str) -> None:
        """Drop `database` if it exists, then create it owned by the test login."""
        self.drop_database(database)
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(self.user)))

    def drop_database(self, database: str) -> None:
        """Drop `database` if it exists, forcing its sessions off."""
        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(database)))

    def add_user(self, database: str, user: str, privileges: str) -> str:
        """Create login `user` with only `privileges` on the tables of `database`; return its URL."""
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(user), sql.Literal(self.password)))
        with psycopg.connect(host=self.datadir, port=self.port, user="postgres", dbname=database,
                             autocommit=True, connect_timeout=2) as conn:
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(user)))
            conn.execute(sql.SQL("GRANT " + privileges + " ON ALL TABLES IN SCHEMA public TO {}").format(
                sql.Identifier(user)))
        return self._url_for(user, database)

    def kill_sessions(self, user: str) -> int:
        """pg_terminate_backend every session of login `user`; return how many."""
        with self._admin() as conn:
            rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                                (user,)).fetchall()
        return len(rows)


def start_mariadb(binary_log: tuple[str, ...] = ("--skip-log-bin",)) -> Server:
    """Start a throwaway MariaDB on a free port with a `reaper` login (ALL but SUPER on *.*)."""
    server = _MariaDB("mariadb", HOST, free_port(), USER, PASSWORD,
                      tempfile.mkdtemp(prefix="reaper-mariadb-", dir=TMP_ROOT), binary_log=binary_log)
    atexit.register(server.stop)
    try:
        _run(["mariadb-install-db", *MARIADB_OPTS, f"--datadir={server.datadir}",
              "--auth-root-authentication-method=normal", "--skip-test-db"], timeout=60)
        server.start()
        with server._admin() as conn, conn.cursor() as cur:
            for host in (HOST, "localhost"):
                cur.execute(f"CREATE USER '{USER}'@'{host}' IDENTIFIED BY %s", (PASSWORD,))
                cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'{host}'")
                cur.execute(f"REVOKE SUPER ON *.* FROM '{USER}'@'{host}'")
    except BaseException:
        server.stop()
        raise
    return server


def start_postgresql() -> Server:
    """Start a throwaway PostgreSQL on a free port with a `reaper` login (owner of its DBs)."""
    server = _PostgreSQL("postgresql", HOST, free_port(), USER, PASSWORD,
                         tempfile.mkdtemp(prefix="reaper-pg-", dir=TMP_ROOT))
    atexit.register(server.stop)
    try:
        if PG_USER:
            shutil.chown(server.datadir, PG_USER, PG_USER)
        _run([_pg_bin("initdb"), "-D", server.datadir, "-U", "postgres", "-E", "UTF8",
              "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"],
             as_pg=True, timeout=60)
        server.start()
        with server._admin() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                sql.Identifier(USER), sql.Literal(PASSWORD)))
    except BaseException:
        server.stop()
        raise
    return server


def _wait_for(what: str, ready: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll ``ready`` until it is true; raise RuntimeError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.1)


def start_mariadb_pair() -> tuple[Server, Server]:
    """Start a MariaDB primary (binary log) and a replica of it, replicating from the primary's next write.

    Tests delay the replica with ``set_mariadb_replica_delay`` and stop it with ``STOP SLAVE``.
    """
    primary = start_mariadb(("--server-id=1", "--log-bin=binlog", "--binlog-format=ROW"))
    try:
        replica = start_mariadb(("--server-id=2", "--skip-log-bin"))
    except BaseException:
        primary.stop()
        raise
    try:
        primary.admin(f"CREATE USER '{REPLICATION_USER}'@'{HOST}' IDENTIFIED BY '{REPLICATION_PASSWORD}'")
        primary.admin(f"GRANT REPLICATION SLAVE ON *.* TO '{REPLICATION_USER}'@'{HOST}'")
        primary.admin("RESET MASTER")  # the replica starts from here: both servers already have their users
        replica.admin(
            f"CHANGE MASTER TO MASTER_HOST='{HOST}', MASTER_PORT={primary.port}, MASTER_USER='{REPLICATION_USER}', "
            f"MASTER_PASSWORD='{REPLICATION_PASSWORD}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1"
        )
        replica.admin("START SLAVE")
        _wait_for("MariaDB replication", lambda: _mariadb_replicating(replica))
    except BaseException:
        replica.stop()
        primary.stop()
        raise
    return primary, replica


def mariadb_replica_status(replica: Server) -> dict[str, object]:
    """Return the replica's ``SHOW SLAVE STATUS`` by field name (empty when it replicates nothing)."""
    with replica._admin() as conn, conn.cursor() as cur:
        cur.execute("SHOW SLAVE STATUS")
        row = cur.fetchone()
        return {} if row is None else dict(zip((column[0] for column in cur.description), row, strict=True))


def _mariadb_replicating(replica: Server) -> bool:
    status = mariadb_replica_status(replica)
    return status.get("Slave_IO_Running") == "Yes" and status.get("Slave_SQL_Running") == "Yes"


def set_mariadb_replica_delay(replica: Server, seconds: int) -> None:
    """Make the replica apply each transaction ``seconds`` after the primary committed it (MASTER_DELAY)."""
    replica.admin("STOP SLAVE")  # MariaDB changes a delay only with both threads stopped
    replica.admin(f"CHANGE MASTER TO MASTER_DELAY={int(seconds)}")
    replica.admin("START SLAVE")


def start_postgresql_pair() -> tuple[Server, Server]:
    """Start a PostgreSQL primary and a streaming replica of it (``pg_basebackup -R``).

    The test login gets ``pg_monitor``, so that it may read every session and standby.
    Tests delay the replica with ``recovery_min_apply_delay`` and stop it with ``stop_process``.
    """
    primary = start_postgresql()
    replica = _PostgreSQL("postgresql", HOST, free_port(), USER, PASSWORD,
                          tempfile.mkdtemp(prefix="reaper-pg-replica-", dir=TMP_ROOT))
    atexit.register(replica.stop)
    try:
        primary.admin(f"CREATE ROLE {REPLICATION_USER} REPLICATION LOGIN PASSWORD '{REPLICATION_PASSWORD}'")
        primary.admin(f"GRANT pg_monitor TO {USER}")
        if PG_USER:
            shutil.chown(replica.datadir, PG_USER, PG_USER)
        source = f"host={HOST} port={primary.port} user={REPLICATION_USER} password={REPLICATION_PASSWORD}"
        _run([_pg_bin("pg_basebackup"), "-d", source, "-D", replica.datadir, "-R", "-X", "stream",
              "--no-sync"], as_pg=True, timeout=60)
        replica.start()
        # the primary's replay_lag is refreshed by the standby's replies: every second, not every ten
        replica.admin("ALTER SYSTEM SET wal_receiver_status_interval = '1s'")
        replica.admin("SELECT pg_reload_conf()")
        _wait_for("PostgreSQL streaming replication",
                  lambda: bool(primary.admin("SELECT 1 FROM pg_stat_replication WHERE state = 'streaming'")))
    except BaseException:
        replica.stop()
        primary.stop()
        raise
    return primary, replica
