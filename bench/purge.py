#!/usr/bin/env python3
"""Benchmark reaper's purge against the bare DELETE and pt-archiver, and the cost of watching.

For each database asked for, the script builds a ``processing_tasks`` table of ``--rows``
rows shaped like a video-processing backend's table (about 96 % successes, 3 % failures, some
retries and fresh pending and running tasks, created over 60 days, ids growing with time; about
49 % are old successes and failures past their retention), with the indexes
``reaper --check-indexes`` recommends, and then measures side by side, rebuilding the same table before each method:

1. purge throughput (rows/s): ``python -m reaper --once --yes`` against one bare ``DELETE ...
   WHERE`` in one transaction and, on MariaDB, ``pt-archiver --purge`` (``--bulk-delete --limit
   1000 --commit-each``, and its row-at-a-time default);
2. reaper's peak RSS for that purge (``/usr/bin/time``'s maximum resident set size), and on a
   10,000-row table, to see that it is flat;
3. the statistics behind ``/metrics``, in-process, with and without the recommended indexes: the
   daemon's per-poll refresh (``poll_stats``, terminal counts reused; the figure of the GOAL line)
   and, separately, a full recount (``collect_stats``: ``--stats-only``, and the daemon's poll
   every ``REAPER_TOTALS_INTERVAL_SECONDS``);
4. an application's single-row UPDATE latency (p50, p99) on an idle table and while reaper purges;

and, from a profiled reaper run (``bench/profiled_reaper.py``), every transaction's length and
where the run's time goes. On MariaDB every method starts once InnoDB has flushed the rebuild's
dirty pages and purged the earlier history (``settle``), and each purge method is also timed until
InnoDB's purge has removed the rows it deleted: the one-transaction DELETE leaves that work for
after its commit, a batched purge pays for it as it goes. It prints a table of figures and one
``GOAL`` line per goal of the benchmark, ``met`` or ``MISSED`` (with the reason when it is known).
Everything listens on 127.0.0.1; the MariaDB server it starts (``tests/servers.py``) is stopped at
the end.

    python bench/purge.py --rows 1000000 --databases sqlite,mariadb
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import math
import os
import platform
import random
import resource
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

TABLE = "processing_tasks"
TEMPLATE = "processing_tasks_template"
HISTORY_SECONDS = 60 * 86400
SUCCESS_RETENTION_DAYS = 30
FAILURE_RETENTION_DAYS = 7
TEN_MILLION = 10_000_000
RSS_SMALL_ROWS = 10_000
METHODS = ("bare", "reaper", "batch", "profile", "pt-archiver", "rss-small")

# The benchmark's goals; never lowered here.
GOAL_RATE_RATIO = 0.9
GOAL_LONGEST_TRANSACTION = 0.5
GOAL_PT_SPEEDUP = 3.0  # "several times faster": at least 3x
GOAL_RSS_MB = 100.0
GOAL_RSS_FLAT = 1.25  # at N rows no more than 1.25x the RSS on a 10,000-row table
GOAL_STATS_SECONDS = 1.0
GOAL_P99_RATIO = 2.0
CORES_SATURATED = 0.75  # a share of the machine's cores above which a method left the others little room

COLUMNS = "id, task_type, status, progress, created_at, started_at, completed_at, updated_at, error_message"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def stamp(moment: datetime) -> str:
    """A naive UTC moment spelt as SQLAlchemy stores DateTime on SQLite (and MariaDB reads it)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def cut_offs(now: datetime) -> tuple[str, str]:
    return stamp(now - timedelta(days=SUCCESS_RETENTION_DAYS)), stamp(now - timedelta(days=FAILURE_RETENTION_DAYS))


FINISHED = "COALESCE(completed_at, updated_at, created_at)"
PURGE_WHERE = f"(status = 'success' AND {FINISHED} < {{cut30}}) OR (status = 'failure' AND {FINISHED} < {{cut7}})"


def row_expressions(now_sql: str, rows: int, seq: str, add_seconds: Callable[[str, str], str],
                    idiv: Callable[[str, int], str]) -> str:
    """The SELECT that makes rows ``seq`` (an integer column) of the benchmark table, for both SQL dialects.

    Deterministic: multiplicative hashes of the sequence number stand for random draws, so every
    rebuild (and both databases) get the same data. Age shaping: ``60 d * t * (0.95 + 0.05 t)``
    with ``t`` falling from 1 to 0 along the ids, a slowly growing traffic; pending and running
    tasks are fresh (the last hour), so there are no zombies and the purge is all deletion.
    """
    t = f"(1.0 - ({seq} - 0.5) / {rows})"
    run_time = f"h3 % 600 + 5 + {idiv('h3', 600)} % 1795"
    keep_completed = f"{idiv('h2', 1000)} % 10 <> 0"  # one finished row in ten has no completed_at
    base = (
        f"SELECT {seq} AS n, ({seq} * 2654435761) % 4294967291 % 1000 AS r, "
        f"({seq} * 2246822519) % 4294967279 AS h2, ({seq} * 3266489917) % 4294967231 AS h3, "
        f"{HISTORY_SECONDS} * {t} * (0.95 + 0.05 * {t}) AS age FROM {{source}}"
    )
    typed = (
        "SELECT n, h2, h3, CASE WHEN r < 960 THEN 'success' WHEN r < 990 THEN 'failure' WHEN r < 998 THEN 'retry' "
        "WHEN r < 999 THEN 'pending' ELSE 'running' END AS status, "
        "CASE WHEN r >= 998 THEN h3 % 3600 ELSE age END AS age FROM (" + base + ") b"
    )
    dated = (
        f"SELECT n, h2, h3, status, {add_seconds(now_sql, '-age')} AS created FROM (" + typed + ") t"
    )
    timed = (
        f"SELECT n, h2, h3, status, created, {add_seconds('created', 'h3 % 600')} AS started, "
        f"{add_seconds('created', run_time)} AS finished FROM (" + dated + ") d"
    )
    done = "status IN ('success', 'failure')"
    return (
        "SELECT n, CASE WHEN h2 % 1000 < 320 THEN 'download' WHEN h2 % 1000 < 640 THEN 'extract_audio' "
        "WHEN h2 % 1000 < 960 THEN 'generate_srt' WHEN h2 % 1000 < 980 THEN 'video_slice' "
        "WHEN h2 % 1000 < 995 THEN 'capcut_export' ELSE 'jianying_export' END, status, "
        "CASE WHEN status = 'success' THEN 100 ELSE h3 % 100 END, created, "
        "CASE WHEN status = 'pending' THEN NULL ELSE started END, "
        f"CASE WHEN {done} AND {keep_completed} AND finished < {now_sql} THEN finished "
        f"WHEN {done} AND {keep_completed} THEN {now_sql} END, "
        f"CASE WHEN status IN ('success', 'failure', 'retry') AND finished < {now_sql} THEN finished "
        f"WHEN status IN ('success', 'failure', 'retry') THEN {now_sql} "
        "WHEN status = 'running' THEN started ELSE created END, "
        "CASE WHEN status IN ('failure', 'retry') THEN CASE h3 % 3 WHEN 0 THEN 'ffmpeg exited with 1' "
        "WHEN 1 THEN 'download timed out' ELSE 'disk full' END END "
        "FROM (" + timed + ") x"
    )


# --------------------------------------------------------------------------------------------
# Child processes: bounded, with their own peak RSS


@dataclass
class ChildRun:
    code: int
    seconds: float
    max_rss_mb: float
    stdout: str
    stderr: str


TIME = Path("/usr/bin/time")


def run_child(cmd: list[str], timeout: float, cwd: Path, env: dict[str, str] | None = None,
              on_start: Callable[[], None] | None = None) -> ChildRun:
    """Run ``cmd``, kill it (its whole session) after ``timeout`` s; return its code, time and peak RSS.

    The peak RSS comes from ``/usr/bin/time`` when present: ``wait4``'s ``ru_maxrss`` of a child
    forked from this process includes this process's own RSS (Linux records the memory the child
    had before ``exec``), so it would report the benchmark's size, not reaper's. The time tool is a
    small process, so what it reports is its child's own peak.
    """
    out, err, peak = cwd / "child.stdout", cwd / "child.stderr", cwd / "child.maxrss"
    if TIME.exists():
        cmd = [str(TIME), "-f", "%M", "-o", str(peak), *cmd]
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                start_new_session=True)
        killer = threading.Timer(timeout, lambda: _kill_group(proc.pid))
        killer.start()
        try:
            if on_start is not None:
                on_start()
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not all children's
        finally:
            killer.cancel()
        seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode in (-signal.SIGKILL, -signal.SIGTERM):
        raise RuntimeError(f"{cmd[0]} ... was killed after the {timeout:g} s time limit")
    max_rss_kb = float(usage.ru_maxrss)  # an upper bound (see above) when /usr/bin/time is missing
    if TIME.exists():  # its exit status is the command's; its file ends with %M (after a line on failure)
        with contextlib.suppress(OSError, ValueError, IndexError):
            max_rss_kb = float(peak.read_text().split()[-1])
    return ChildRun(proc.returncode, seconds, max_rss_kb / 1024, out.read_text(errors="replace"),
                    err.read_text(errors="replace"))


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def child_env() -> dict[str, str]:
    # reaper runs as an installed package does, from compiled bytecode (main() compiles it once):
    # PYTHONDONTWRITEBYTECODE would make every child compile reaper's modules again (~0.2 s here)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("REAPER_") and key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


# --------------------------------------------------------------------------------------------
# The two databases


class Backend:
    """One database: build the table, run the bare DELETE, give the app a connection."""

    name = ""

    def __init__(self, rows: int, workdir: Path, indexes: bool) -> None:
        self.rows = rows
        self.workdir = workdir
        self.indexes = indexes
        self.index_statements: list[str] = []

    # -- to implement
    def url(self) -> str: ...
    def build_template(self, now: datetime, stats: Callable[[str], float]) -> dict[str, float]: ...
    def rebuild(self) -> None: ...
    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...
    def bare_delete(self, cut30: str, cut7: str) -> int: ...
    def app_connection(self) -> Any: ...
    def app_update(self, conn: Any, when: str, task_id: int) -> None: ...
    def version(self) -> str: ...
    def close(self) -> None: ...
    placeholder = "?"

    def count(self, where: str | None = None, params: tuple[Any, ...] = ()) -> int:
        sql = f"SELECT COUNT(*) FROM {TABLE}" + (f" WHERE {where}" if where else "")
        return int(self.execute(sql, params)[0][0])

    def purge_where(self) -> str:
        return PURGE_WHERE.format(cut30=self.placeholder, cut7=self.placeholder)

    # -- background work of the database after a commit (InnoDB's flushing and purge); none by default
    def settle(self) -> None:
        """Wait until the database has finished the background work left by the rebuild and earlier methods."""

    def purge_mark(self) -> int | None:
        """The database's running count of deleted rows it has removed for good, or None if it has none."""
        return None

    def server_cpu_seconds(self) -> float | None:
        """CPU time (user and system, every thread) the database server has used, or None without a server."""
        return None

    def wait_purged(self, mark: int, rows: int) -> tuple[float | None, int]:
        """Poll until ``rows`` more rows than at ``mark`` are removed: (perf_counter then or None, rows removed)."""
        return None, 0

    def recommended_indexes(self, table_name: str) -> list[str]:
        """The CREATE INDEX statements ``reaper --check-indexes`` prints for the missing indexes."""
        from reaper.database.connection import create_db_engine
        from reaper.database.table import open_table
        from reaper.inspect.indexes import check_indexes
        from reaper.settings.model import load_settings

        settings = load_settings({"database_url": self.url(), "table": table_name})
        engine = create_db_engine(settings.url)
        try:
            return [item.create_statement.rstrip(";") for item in check_indexes(open_table(engine, settings))
                    if not item.present]
        finally:
            engine.dispose()


class SQLiteBackend(Backend):
    name = "sqlite"
    placeholder = "?"

    def __init__(self, rows: int, workdir: Path, indexes: bool) -> None:
        super().__init__(rows, workdir, indexes)
        self.path = workdir / "tasks.sqlite3"
        self.template = workdir / "template.sqlite3"
        self.template_plain = workdir / "template-noindex.sqlite3"

    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def _connect(self, path: Path | None = None) -> sqlite3.Connection:
        return sqlite3.connect(path or self.path, isolation_level=None, timeout=30)

    def version(self) -> str:
        return f"SQLite {sqlite3.sqlite_version} (rollback journal, synchronous=FULL: the defaults)"

    def build_template(self, now: datetime, stats: Callable[[str], float]) -> dict[str, float]:
        timings: dict[str, float] = {}
        self.path.unlink(missing_ok=True)
        started = time.perf_counter()
        conn = self._connect()
        conn.execute(
            f"CREATE TABLE {TABLE} (id INTEGER NOT NULL PRIMARY KEY, task_type VARCHAR(32) NOT NULL, "
            "status VARCHAR(16) NOT NULL, progress INTEGER NOT NULL, created_at DATETIME NOT NULL, "
            "started_at DATETIME, completed_at DATETIME, updated_at DATETIME, error_message TEXT)"
        )

        def add(moment: str, seconds: str) -> str:
            # julianday arithmetic, spelt 'YYYY-MM-DD HH:MM:SS.ffffff' like SQLAlchemy writes it
            days = f"(({seconds}) / 86400.0)"
            return f"(strftime('%Y-%m-%d %H:%M:%f', julianday({moment}) + {days}) || '000')"

        select = row_expressions(f"'{stamp(now)}'", self.rows, "value", add, lambda a, b: f"({a} / {b})")
        select = select.replace("{source}", "gen")
        conn.execute("BEGIN")
        for low in range(1, self.rows + 1, 1_000_000):
            high = min(low + 999_999, self.rows)
            conn.execute(
                f"WITH RECURSIVE gen(value) AS (SELECT {low} UNION ALL SELECT value + 1 FROM gen WHERE value < {high}) "
                f"INSERT INTO {TABLE} ({COLUMNS}) {select}"
            )
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.close()
        timings["fill"] = time.perf_counter() - started
        timings["stats_without_indexes"] = stats(TABLE)
        shutil.copyfile(self.path, self.template_plain)
        self.index_statements = self.recommended_indexes(TABLE)
        started = time.perf_counter()
        conn = self._connect()
        for statement in self.index_statements:
            conn.execute(statement)
        conn.execute("ANALYZE")
        conn.close()
        timings["indexes"] = time.perf_counter() - started
        timings["stats_with_indexes"] = stats(TABLE)
        shutil.copyfile(self.path, self.template)
        return timings

    def rebuild(self) -> None:
        for leftover in self.workdir.glob("tasks.sqlite3*"):
            leftover.unlink()
        shutil.copyfile(self.template if self.indexes else self.template_plain, self.path)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self._connect()
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def bare_delete(self, cut30: str, cut7: str) -> int:
        conn = self._connect()
        try:
            conn.execute("BEGIN")
            deleted = conn.execute(f"DELETE FROM {TABLE} WHERE {self.purge_where()}", (cut30, cut7)).rowcount
            conn.execute("COMMIT")
            return deleted
        finally:
            conn.close()

    def app_connection(self) -> sqlite3.Connection:
        return self._connect()

    def app_update(self, conn: sqlite3.Connection, when: str, task_id: int) -> None:
        conn.execute(f"UPDATE {TABLE} SET updated_at = ? WHERE id = ?", (when, task_id))

    def close(self) -> None:
        pass


class MariaDBBackend(Backend):
    name = "mariadb"
    placeholder = "%s"
    DATABASE = "bench"

    SETTLE_LIMIT = 120.0  # s: then the method is timed anyway, and the log says so
    SETTLED_DIRTY_PAGES = 500  # or 1 % of the pool, whichever is more
    SETTLED_HISTORY = 10  # undo logs not yet purged: ANALYZE and the statistics tables leave a few
    PURGED_LIMIT = 180.0  # s after a method's end
    POLL_SECONDS = 0.15

    def __init__(self, rows: int, workdir: Path, indexes: bool, buffer_pool_mb: int, durable: bool) -> None:
        super().__init__(rows, workdir, indexes)
        import servers  # tests/servers.py: MariaDB as a plain process on 127.0.0.1

        self.server = servers.start_mariadb()
        self.settings_note = ""
        try:
            with self.server._admin() as conn, conn.cursor() as cur:
                cur.execute(f"SET GLOBAL innodb_buffer_pool_size = {buffer_pool_mb * 1024 * 1024}")
                cur.execute(f"SET GLOBAL innodb_flush_log_at_trx_commit = {1 if durable else 2}")
                cur.execute("SET GLOBAL innodb_monitor_enable = 'module_purge'")  # purge_del_mark_records
                cur.execute("SELECT @@innodb_buffer_pool_size, @@innodb_flush_log_at_trx_commit, @@innodb_doublewrite")
                pool, flush, doublewrite = cur.fetchone()
            self.settings_note = (f"innodb_buffer_pool_size={int(pool) // 2**20}M, "
                                  f"innodb_flush_log_at_trx_commit={flush}, innodb_doublewrite={doublewrite}")
            self.server.create_database(self.DATABASE)
        except BaseException:
            self.server.stop()
            raise

    def url(self) -> str:
        return self.server.url(self.DATABASE)

    def _connect(self, autocommit: bool = True) -> Any:
        import pymysql

        return pymysql.connect(host=self.server.host, port=self.server.port, user=self.server.user,
                               password=self.server.password, database=self.DATABASE, autocommit=autocommit,
                               charset="utf8mb4", ssl_disabled=True, read_timeout=3600)

    def version(self) -> str:
        return f"MariaDB {self.execute('SELECT VERSION()')[0][0]} ({self.settings_note})"

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params or None)
                return list(cur.fetchall())
        finally:
            conn.close()

    def build_template(self, now: datetime, stats: Callable[[str], float]) -> dict[str, float]:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        self.execute(f"DROP TABLE IF EXISTS {TABLE}, {TEMPLATE}")
        self.execute(
            f"CREATE TABLE {TABLE} (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, task_type VARCHAR(32) NOT NULL, "
            "status VARCHAR(16) NOT NULL, progress INT NOT NULL, created_at DATETIME(6) NOT NULL, "
            "started_at DATETIME(6) NULL, completed_at DATETIME(6) NULL, updated_at DATETIME(6) NULL, "
            "error_message TEXT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )

        def add(moment: str, seconds: str) -> str:
            return f"({moment} + INTERVAL ROUND(({seconds}) * 1000000) MICROSECOND)"

        select = row_expressions(f"TIMESTAMP('{stamp(now)}')", self.rows, "seq", add, lambda a, b: f"({a} DIV {b})")
        for low in range(1, self.rows + 1, 1_000_000):
            high = min(low + 999_999, self.rows)
            sql = f"INSERT INTO {TABLE} ({COLUMNS}) " + select.replace("{source}", f"seq_{low}_to_{high}")
            self.execute(sql)
        self.execute(f"ANALYZE TABLE {TABLE}")
        timings["fill"] = time.perf_counter() - started
        timings["stats_without_indexes"] = stats(TABLE)
        self.index_statements = self.recommended_indexes(TABLE)
        started = time.perf_counter()
        for statement in self.index_statements:
            self.execute(statement)
        self.execute(f"ANALYZE TABLE {TABLE}")
        timings["indexes"] = time.perf_counter() - started
        timings["stats_with_indexes"] = stats(TABLE)
        self.execute(f"RENAME TABLE {TABLE} TO {TEMPLATE}")
        return timings

    def rebuild(self) -> None:
        self.execute(f"DROP TABLE IF EXISTS {TABLE}")
        self.execute(f"CREATE TABLE {TABLE} LIKE {TEMPLATE}")
        secondary = [name for (name,) in self.execute(
            "SELECT DISTINCT index_name FROM information_schema.statistics WHERE table_schema = DATABASE() "
            "AND table_name = %s AND index_name <> 'PRIMARY'", (TABLE,))]
        if secondary:  # load first, then build the indexes sorted: faster than maintaining them row by row
            self.execute(f"ALTER TABLE {TABLE} " + ", ".join(f"DROP INDEX `{name}`" for name in secondary))
        self.execute(f"INSERT INTO {TABLE} SELECT * FROM {TEMPLATE}")
        if self.indexes and self.index_statements:
            for statement in self.index_statements:
                self.execute(statement)
        self.execute(f"ANALYZE TABLE {TABLE}")

    def bare_delete(self, cut30: str, cut7: str) -> int:
        conn = self._connect(autocommit=False)
        try:
            with conn.cursor() as cur:
                deleted = cur.execute(f"DELETE FROM {TABLE} WHERE {self.purge_where()}", (cut30, cut7))
            conn.commit()
            return int(deleted)
        finally:
            conn.close()

    def _metrics(self, cur: Any) -> dict[str, int]:
        """InnoDB's history list length (undo logs not yet purged) and its count of purged delete-marked rows."""
        cur.execute("SELECT name, count FROM information_schema.INNODB_METRICS "
                    "WHERE name IN ('trx_rseg_history_len', 'purge_del_mark_records')")
        return {name: int(count) for name, count in cur.fetchall()}

    def _dirty_pages(self, cur: Any) -> tuple[int, int]:
        cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN "
                    "('Innodb_buffer_pool_pages_dirty', 'Innodb_buffer_pool_pages_total')")
        values = {name.lower(): int(value) for name, value in cur.fetchall()}
        return values["innodb_buffer_pool_pages_dirty"], values["innodb_buffer_pool_pages_total"]

    def settle(self) -> None:
        """Flush the dirty pages and let the purge finish, so that no method pays for the one before it."""
        started = time.perf_counter()
        with self.server._admin() as conn, conn.cursor() as cur:
            cur.execute("SELECT @@innodb_max_dirty_pages_pct, @@innodb_max_dirty_pages_pct_lwm, @@innodb_io_capacity")
            pct, lwm, capacity = cur.fetchone()
            # 0: the page cleaner flushes every second, innodb_io_capacity pages at a time (setting it
            # lowers the low-water mark too); at the default 200 that is about 100 pages/s here, so the
            # capacity is raised to its maximum meanwhile (about 700 pages/s)
            cur.execute("SET GLOBAL innodb_max_dirty_pages_pct = 0")
            cur.execute("SET GLOBAL innodb_io_capacity = @@innodb_io_capacity_max")
            try:
                settled, dirty, history = self._wait_settled(cur, started + self.SETTLE_LIMIT)
            finally:
                cur.execute(f"SET GLOBAL innodb_io_capacity = {int(capacity)}")
                cur.execute(f"SET GLOBAL innodb_max_dirty_pages_pct = {float(pct)}")
                cur.execute(f"SET GLOBAL innodb_max_dirty_pages_pct_lwm = {float(lwm)}")
        log(f"{self.name}: {'settled' if settled else 'did NOT settle'} in {time.perf_counter() - started:.1f} s "
            f"({dirty:,} dirty pages, history list length {history:,})")

    def _wait_settled(self, cur: Any, deadline: float) -> tuple[bool, int, int]:
        """Poll until few pages are dirty and the purge is done, or the deadline: (settled, dirty, history)."""
        while True:
            dirty, total = self._dirty_pages(cur)
            history = self._metrics(cur)["trx_rseg_history_len"]
            settled = dirty < max(self.SETTLED_DIRTY_PAGES, total // 100) and history <= self.SETTLED_HISTORY
            if settled or time.perf_counter() > deadline:
                return settled, dirty, history
            time.sleep(self.POLL_SECONDS)

    def server_cpu_seconds(self) -> float:
        """CPU time (user and system, every thread) the MariaDB server has used since it started."""
        pid = Path(self.server.datadir, "mysqld.pid").read_text().strip()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def purge_mark(self) -> int:
        with self.server._admin() as conn, conn.cursor() as cur:
            return self._metrics(cur)["purge_del_mark_records"]

    def wait_purged(self, mark: int, rows: int) -> tuple[float | None, int]:
        """Poll InnoDB's purge counter until it is ``rows`` past ``mark`` or the history list is empty.

        The empty history list ends the wait when a method deleted fewer rows than asked (then
        nothing is left to purge, whatever the counter says); None after ``PURGED_LIMIT`` s.
        """
        deadline = time.perf_counter() + self.PURGED_LIMIT
        with self.server._admin() as conn, conn.cursor() as cur:
            while True:
                metrics = self._metrics(cur)
                now = time.perf_counter()
                purged = metrics["purge_del_mark_records"] - mark
                if purged >= rows or metrics["trx_rseg_history_len"] == 0:
                    return now, purged
                if now > deadline:
                    return None, purged
                time.sleep(self.POLL_SECONDS)

    def app_connection(self) -> Any:
        return self._connect(autocommit=True)

    def app_update(self, conn: Any, when: str, task_id: int) -> None:
        with conn.cursor() as cur:
            cur.execute(f"UPDATE {TABLE} SET updated_at = %s WHERE id = %s", (when, task_id))

    def pt_archiver(self, cut30: str, cut7: str, bulk: bool, cwd: Path, timeout: float) -> ChildRun:
        s = self.server
        dsn = f"h={s.host},P={s.port},u={s.user},p={s.password},D={self.DATABASE},t={TABLE},A=utf8mb4"
        where = PURGE_WHERE.format(cut30=f"'{cut30}'", cut7=f"'{cut7}'")
        cmd = ["pt-archiver", "--source", dsn, "--purge", "--where", where, "--limit", "1000", "--commit-each",
               "--no-version-check", "--no-safe-auto-increment"]
        if bulk:
            cmd.append("--bulk-delete")
        return run_child(cmd, timeout, cwd)

    def close(self) -> None:
        self.server.stop()


# --------------------------------------------------------------------------------------------
# Measurements


def time_stats(url: str, table_name: str, repeats: int) -> float:
    """Median wall time of the daemon's per-poll refresh, in this process; the full recount's goes to STATS_FULL.

    The per-poll refresh is ``poll_stats`` with terminal counts younger than the totals interval, what
    the daemon does on all but one poll in ``REAPER_TOTALS_INTERVAL_SECONDS / REAPER_STATS_INTERVAL_SECONDS``
    (19 in 20 with the defaults); the full recount is ``collect_stats`` (``--stats-only``, and
    ``poll_stats``' cost when its terminal counts are due). Each after one warm-up call.
    """
    from reaper.database.connection import create_db_engine
    from reaper.database.table import open_table
    from reaper.inspect.stats import collect_stats, poll_stats
    from reaper.policy.policies import standard_policies
    from reaper.settings.model import load_settings

    settings = load_settings({"database_url": url, "table": table_name})
    engine = create_db_engine(settings.url)
    try:
        table = open_table(engine, settings)
        policies = standard_policies(settings)
        now = datetime.now(UTC)
        never = timedelta(days=1)
        _, totals = poll_stats(table, policies, now, None, never)  # the counts every later poll reuses

        def one_poll() -> None:
            if poll_stats(table, policies, now, totals, never)[1] is not totals:
                raise AssertionError("the timed poll recounted the terminal statuses")

        polls = [timed(one_poll) for _ in range(repeats + 1)][1:]
        fulls = [timed(lambda: collect_stats(table, policies, now)) for _ in range(repeats + 1)][1:]
        STATS_PARTS[table_name if table_name != TABLE else "last"] = stats_parts(table, policies, now)
        STATS_FULL["last"] = statistics.median(fulls)
        return statistics.median(polls)
    finally:
        engine.dispose()


def reaper_command(url: str, flags: Sequence[str], profiled: bool = False) -> list[str]:
    """The command line of one ``reaper --once`` run on ``url`` with ``flags``; a profiled run logs every
    batch as JSON (``bench/profiled_reaper.py`` reads them), the others only warnings."""
    entry = [str(BENCH / "profiled_reaper.py")] if profiled else ["-m", "reaper"]
    logging = ["--log-level", "INFO", "--log-json"] if profiled else ["--log-level", "WARNING"]
    return [sys.executable, *entry, "--once", "--yes", "--json", "--database-url", url, *flags, *logging]


def children_cpu_seconds() -> float:
    """CPU time of this process's finished children (the methods' processes: reaper, pt-archiver)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu_seconds() -> float:
    """CPU time of this process (the bare DELETE's client) and of its finished children."""
    mine = resource.getrusage(resource.RUSAGE_SELF)
    return mine.ru_utime + mine.ru_stime + children_cpu_seconds()


def cores_busy(cpu_seconds: float, seconds: float) -> float:
    """The share of the machine's cores that ``cpu_seconds`` of CPU time kept busy over ``seconds``."""
    return cpu_seconds / seconds / (os.cpu_count() or 1)


@dataclass
class FreshTable:
    """A rebuilt, settled table about to be purged: the cut-offs, the rows they match, InnoDB's purge counter."""

    cuts: tuple[str, str]
    expected: int
    mark: int | None


def fresh_table(backend: Backend) -> FreshTable:
    """Rebuild the table from its template and wait until the database has settled."""
    backend.rebuild()
    backend.settle()
    cuts = cut_offs(utc_now())
    return FreshTable(cuts, backend.count(backend.purge_where(), cuts), backend.purge_mark())


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


STATS_PARTS: dict[str, dict[str, float]] = {}
STATS_FULL: dict[str, float] = {}


def stats_parts(table: Any, policies: list[Any], now: datetime) -> dict[str, float]:
    """Time each query of a refresh on its own (reaper.inspect.stats' private helpers), to see which one costs."""
    from reaper.inspect import stats
    from reaper.policy.policies import Action

    parts: dict[str, float] = {}
    with table.engine.connect() as conn:
        parts["full recount: rows by status and type (GROUP BY over the table)"] = timed(
            lambda: stats._counts(conn, table))
        parts["poll: active statuses by type (status IN (pending, running, retry))"] = timed(
            lambda: stats._active_counts(conn, table))
        parts["when due: the other statuses by type (status NOT IN (...))"] = timed(
            lambda: stats._other_counts(conn, table, now))
        parts["created in the last 24 h"] = timed(lambda: stats._created_since(conn, table, now - stats.RECENT_WINDOW))
        for policy in policies:
            if policy.action is Action.FAIL:
                parts[f"stale {policy.status}"] = timed(lambda policy=policy: stats._stale(conn, table, policy, now))
        parts["alternative, not used: active counts and both stale queries in one query"] = timed(
            lambda: active_and_zombies_in_one_query(conn, table, policies, now))
    return parts


def active_and_zombies_in_one_query(conn: Any, table: Any, policies: list[Any], now: datetime) -> int:
    """One GROUP BY status, task_type over the active statuses that also sums the zombies and finds the oldest.

    Measured against reaper's separate queries (one count, one per fail policy) to see whether
    sharing the scan of the active rows pays; its figures are only timed, not used.
    """
    from sqlalchemy import Integer, case, func, select

    from reaper.inspect.stats import _is_active, _task_type
    from reaper.policy.matching import dating_columns, rule_condition
    from reaper.policy.policies import Action

    fail = [policy for policy in policies if policy.action is Action.FAIL]
    stale = case(*((rule_condition(table, p, p.default, now), 1) for p in fail), else_=0)
    def dated(policy: Any) -> Any:  # the moment a row is dated from: its first age column with a value
        columns = [column for _, column in dating_columns(table, policy, policy.default)]
        return columns[0] if len(columns) == 1 else func.coalesce(*columns)

    oldest = [func.min(case((table.status_is(p.status), dated(p)))) for p in fail]
    task_type = _task_type(table)
    query = (select(table.status, task_type, func.count(), func.sum(stale, type_=Integer), *oldest)
             .where(_is_active(table)).group_by(table.status, task_type))
    return len(conn.execute(query).all())


@dataclass
class Latency:
    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def summarize(latencies: list[float]) -> Latency:
    ms = [value * 1000 for value in latencies]
    return Latency(len(ms), percentile(ms, 0.50), percentile(ms, 0.99), max(ms))


class AppLoad:
    """An application thread: single-row UPDATEs of recent tasks, each its own transaction."""

    def __init__(self, backend: Backend, pause: float, seed: int = 7) -> None:
        self.backend = backend
        self.pause = pause
        self.rng = random.Random(seed)
        self.low = max(1, int(backend.rows * 0.9))  # the newest 10 %: never old enough to purge
        self.latencies: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self, limit: int, seconds: float) -> None:
        conn = self.backend.app_connection()
        deadline = time.monotonic() + seconds
        try:
            while len(self.latencies) < limit and not self._stop.is_set() and time.monotonic() < deadline:
                task_id = self.rng.randint(self.low, self.backend.rows)
                started = time.perf_counter()
                try:
                    self.backend.app_update(conn, stamp(utc_now()), task_id)
                except Exception:  # a lock time-out counts as an error, not as a sample
                    self.errors += 1
                    continue
                self.latencies.append(time.perf_counter() - started)
                if self.pause:
                    time.sleep(self.pause)
        finally:
            conn.close()

    def start(self, limit: int, seconds: float) -> None:
        self._thread = threading.Thread(target=self.run, args=(limit, seconds), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)


@dataclass
class MethodResult:
    method: str
    deleted: int
    seconds: float
    rate: float
    left_over: int
    expected: int
    max_rss_mb: float | None = None
    note: str = ""
    # MariaDB: from the method's start until InnoDB's purge had removed the deleted rows (after the commit)
    settled_seconds: float | None = None
    settled_rate: float | None = None
    ratio: float | None = None  # rate / the bare DELETE's rate (to the last commit)
    settled_ratio: float | None = None  # settled_rate / the bare DELETE's settled_rate
    # MariaDB: the server's CPU seconds to the last commit, and the share of the machine's cores that the
    # server and the method's own process kept busy meanwhile
    server_cpu: float | None = None
    cores_busy: float | None = None


@dataclass
class Profile:
    """Where a profiled reaper run spent its time (see bench/profiled_reaper.py)."""

    wall: float
    write_transactions: int
    longest_write: float
    write_over_limit: int
    longest_any: float
    statements: dict[str, list[float]]
    calls: dict[str, list[float]]
    batches_logged: int
    longest_batch_gap: float
    gaps_over_limit: int


@dataclass
class BackendReport:
    name: str
    version: str
    rows: int
    build: dict[str, float] = field(default_factory=dict)
    purgeable: int = 0
    methods: list[MethodResult] = field(default_factory=list)
    rss_small_mb: float | None = None
    profile: Profile | None = None
    profile_under_load: Profile | None = None
    idle: Latency | None = None
    during: Latency | None = None
    during_errors: int = 0
    index_statements: list[str] = field(default_factory=list)
    stats_parts: dict[str, dict[str, float]] = field(default_factory=dict)
    stats_full: dict[str, float] = field(default_factory=dict)  # full recount, "without/with indexes"

    def method(self, name: str) -> MethodResult | None:
        return next((m for m in self.methods if m.method == name), None)


def compare_to_bare(report: BackendReport) -> None:
    """Each method's rates as a share of the bare DELETE's: to the last commit, and until purged."""
    bare = report.method("bare DELETE")
    if bare is None:
        return
    for m in report.methods:
        m.ratio = m.rate / bare.rate if bare.rate else None
        if m.settled_rate is not None and bare.settled_rate:
            m.settled_ratio = m.settled_rate / bare.settled_rate


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.env = child_env()
        self.run_number = 0

    def fresh_dir(self, label: str) -> Path:
        self.run_number += 1
        path = self.workdir / f"run-{self.run_number:02d}-{label}"
        path.mkdir()
        return path

    def reaper_cmd(self, url: str, profiled: bool, batch_size: int | None = None) -> list[str]:
        batch_size = batch_size or self.args.batch_size
        sized = ["--batch-size", str(batch_size)] if batch_size else []
        return reaper_command(url, [*sized, *shlex.split(self.args.reaper_flags)], profiled)

    def measure(self, backend: Backend, report: BackendReport, method: str,
                action: Callable[[str, str, Path], tuple[int | None, ChildRun | None]]) -> MethodResult:
        fresh = fresh_table(backend)
        (cut30, cut7), expected, mark = fresh.cuts, fresh.expected, fresh.mark
        before = backend.count()
        run_dir = self.fresh_dir(method.split()[0].replace("-", ""))
        log(f"{backend.name}: {method}: {expected:,} of {before:,} rows to purge")
        cpu_before, own_before = backend.server_cpu_seconds(), own_cpu_seconds()
        started = time.perf_counter()
        _, child = action(cut30, cut7, run_dir)
        ended = time.perf_counter()
        cpu_after, own_cpu = backend.server_cpu_seconds(), own_cpu_seconds() - own_before
        seconds = child.seconds if child is not None else ended - started
        if child is not None and child.code != 0:
            raise RuntimeError(f"{method} exited with {child.code}: {child.stderr[-2000:]}")
        settled, purged = self.settled_time(backend, mark, expected, ended - seconds)  # from the child's start
        note = ""
        if child is not None and method.startswith("reaper"):
            with contextlib.suppress(ValueError, KeyError):
                inside = float(json.loads(child.stdout)["duration_seconds"])
                note = (f"{inside:.2f} s of the {seconds:.2f} s were the policies themselves (run_policies); "
                        "the rest is start-up: interpreter, imports, reflection, the lock")
        deleted = before - backend.count()
        left = backend.count(backend.purge_where(), (cut30, cut7))
        result = MethodResult(method, deleted, seconds, deleted / seconds if seconds else 0.0, left, expected,
                              child.max_rss_mb if child is not None and method.startswith("reaper") else None, note)
        if settled is not None:
            result.settled_seconds, result.settled_rate = settled, deleted / settled
        if cpu_before is not None and cpu_after is not None and seconds:
            result.server_cpu = cpu_after - cpu_before
            result.cores_busy = cores_busy(result.server_cpu + own_cpu, ended - started)
        if mark is not None and purged < deleted:
            result.note = "; ".join(filter(None, [note, f"InnoDB's purge counter saw {purged:,} of the {deleted:,} "
                                                        "rows by the end of the wait"]))
        log(f"{backend.name}: {method}: {deleted:,} rows in {seconds:.2f} s = {result.rate:,.0f} rows/s"
            + (f", peak RSS {result.max_rss_mb:.0f} MB" if result.max_rss_mb else "")
            + (f"; purged by InnoDB {settled:.2f} s after its start = {result.settled_rate:,.0f} rows/s"
               if settled is not None else ""))
        report.methods.append(result)
        return result

    def settled_time(self, backend: Backend, mark: int | None, expected: int,
                     began: float) -> tuple[float | None, int]:
        """Seconds from ``began`` until the database's purge had removed the rows (None if it has no purge).

        The target is ``expected``, counted before the method: counting the rows deleted takes a
        COUNT over the table, which would run alongside the purge and delay the first poll. Every
        method deletes the ``expected`` rows (``left_over`` says when not); one that deletes fewer
        ends the wait by an empty history list (see ``wait_purged``). The count follows the wait.
        """
        if mark is None:
            return None, 0
        purged_at, purged = backend.wait_purged(mark, expected)
        if purged_at is None:
            log(f"{backend.name}: InnoDB had purged only {purged:,} of {expected:,} rows after the wait")
            return None, purged
        return purged_at - began, purged

    def profile_of(self, path: Path, stderr: str) -> Profile:
        data = json.loads(path.read_text())
        writes = [seconds for seconds, wrote in data["transactions"] if wrote]
        every = [seconds for seconds, _ in data["transactions"]]
        stamps = []
        for line in stderr.splitlines():
            with contextlib.suppress(ValueError, KeyError):
                record = json.loads(line)["record"]
                stamps.append((record["time"]["timestamp"], " in batch " in record["message"]))
        gaps = [now - before for (before, _), (now, is_batch) in zip(stamps, stamps[1:], strict=False) if is_batch]
        return Profile(
            wall=data["wall_seconds"],
            write_transactions=len(writes),
            longest_write=max(writes, default=0.0),
            write_over_limit=sum(1 for s in writes if s > GOAL_LONGEST_TRANSACTION),
            longest_any=max(every, default=0.0),
            statements=data["statements"],
            calls=data["calls"],
            batches_logged=sum(1 for _, is_batch in stamps if is_batch),
            longest_batch_gap=max(gaps, default=0.0),
            gaps_over_limit=sum(1 for g in gaps if g > GOAL_LONGEST_TRANSACTION),
        )

    def run_backend(self, backend: Backend) -> BackendReport:
        args = self.args
        report = BackendReport(backend.name, backend.version(), backend.rows)
        log(f"{backend.name}: building {backend.rows:,} rows")
        labels = ["without indexes", "with indexes"]  # build_template times the table twice, in this order

        def timed_stats(table: str) -> float:
            seconds = time_stats(backend.url(), table, args.stats_repeats)
            which = labels.pop(0)
            report.stats_parts[which] = STATS_PARTS.pop("last", {})
            report.stats_full[which] = STATS_FULL.pop("last")
            return seconds

        report.build = backend.build_template(utc_now(), timed_stats)
        report.index_statements = backend.index_statements
        log(f"{backend.name}: built in {report.build['fill']:.1f} s (+{report.build['indexes']:.1f} s indexes); "
            f"stats per poll {report.build['stats_without_indexes']:.3f} s without indexes, "
            f"{report.build['stats_with_indexes']:.3f} s with; full recount "
            f"{report.stats_full['without indexes']:.3f} s and {report.stats_full['with indexes']:.3f} s")

        def bare(cut30: str, cut7: str, run_dir: Path) -> tuple[int, None]:
            return backend.bare_delete(cut30, cut7), None

        def reaper(cut30: str, cut7: str, run_dir: Path) -> tuple[None, ChildRun]:
            return None, run_child(self.reaper_cmd(backend.url(), False), args.timeout, run_dir, self.env)

        methods = args.methods
        if "bare" in methods:
            report.purgeable = self.measure(backend, report, "bare DELETE", bare).expected
        if "reaper" in methods:
            self.measure(backend, report, "reaper --once", reaper)
        for size in args.extra_batch_sizes if "batch" in methods else []:
            def sized(cut30: str, cut7: str, run_dir: Path, size: int = size) -> tuple[None, ChildRun]:
                return None, run_child(self.reaper_cmd(backend.url(), False, size), args.timeout, run_dir, self.env)
            self.measure(backend, report, f"reaper --batch-size {size}", sized)
        if "profile" in methods:
            self.profile_runs(backend, report)
        if isinstance(backend, MariaDBBackend) and "pt-archiver" in methods and not args.skip_pt_archiver:
            for bulk, label in ((True, "pt-archiver --bulk-delete"), (False, "pt-archiver (defaults)")):
                def pt(cut30: str, cut7: str, run_dir: Path, bulk: bool = bulk) -> tuple[None, ChildRun]:
                    return None, backend.pt_archiver(cut30, cut7, bulk, run_dir, args.timeout)
                self.measure(backend, report, label, pt)
        if "rss-small" in methods and not args.quick and backend.rows > RSS_SMALL_ROWS:
            report.rss_small_mb = self.rss_on_small_table(backend)
        if not report.purgeable and report.methods:
            report.purgeable = report.methods[0].expected
        compare_to_bare(report)
        return report

    def profile_runs(self, backend: Backend, report: BackendReport) -> None:
        """A profiled reaper run on its own, then application latency idle and during a profiled run."""
        args = self.args
        backend.rebuild()
        backend.settle()
        run_dir = self.fresh_dir("profile")
        env = dict(self.env, BENCH_PROFILE_OUT=str(run_dir / "profile.json"))
        log(f"{backend.name}: profiled reaper run")
        child = run_child(self.reaper_cmd(backend.url(), True), args.timeout, run_dir, env)
        if child.code != 0:
            raise RuntimeError(f"profiled reaper exited with {child.code}: {child.stderr[-2000:]}")
        report.profile = self.profile_of(run_dir / "profile.json", child.stderr)

        # application latency: idle, then while reaper purges (profiled as well)
        backend.rebuild()
        backend.settle()
        idle = AppLoad(backend, args.app_pause)
        idle.run(args.latency_updates, args.timeout)
        report.idle = summarize(idle.latencies)
        run_dir = self.fresh_dir("latency")
        env = dict(self.env, BENCH_PROFILE_OUT=str(run_dir / "profile.json"))
        load = AppLoad(backend, args.app_pause, seed=8)
        log(f"{backend.name}: app updates idle p50 {report.idle.p50_ms:.2f} ms p99 {report.idle.p99_ms:.2f} ms; "
            "now during a purge")
        try:
            child = run_child(self.reaper_cmd(backend.url(), True), args.timeout, run_dir, env,
                              on_start=lambda: load.start(args.latency_updates_max, args.timeout))
        finally:
            load.stop()
        if child.code != 0:
            raise RuntimeError(f"reaper under load exited with {child.code}: {child.stderr[-2000:]}")
        report.profile_under_load = self.profile_of(run_dir / "profile.json", child.stderr)
        report.during = summarize(load.latencies) if load.latencies else None
        report.during_errors = load.errors

    def rss_on_small_table(self, backend: Backend) -> float:
        """reaper's peak RSS purging a 10,000-row table of the same shape: the flat baseline."""
        small_dir = self.fresh_dir("small")
        if isinstance(backend, MariaDBBackend):
            small: Backend = backend
            saved = backend.rows
            backend.rows = RSS_SMALL_ROWS
            try:
                backend.build_template(utc_now(), lambda table: 0.0)
                backend.rebuild()
                run = run_child(self.reaper_cmd(backend.url(), False), self.args.timeout, small_dir, self.env)
            finally:
                backend.rows = saved
        else:
            small = SQLiteBackend(RSS_SMALL_ROWS, small_dir, True)
            small.build_template(utc_now(), lambda table: 0.0)
            small.rebuild()
            run = run_child(self.reaper_cmd(small.url(), False), self.args.timeout, small_dir, self.env)
        if run.code != 0:
            raise RuntimeError(f"reaper on the small table exited with {run.code}: {run.stderr[-2000:]}")
        log(f"{backend.name}: reaper peak RSS on {RSS_SMALL_ROWS:,} rows: {run.max_rss_mb:.0f} MB")
        return run.max_rss_mb


# --------------------------------------------------------------------------------------------
# Report


def fmt_int(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def purged_columns(m: MethodResult) -> str:
    """The three columns counted until InnoDB has removed the rows, or dashes."""
    if m.settled_seconds is None or m.settled_rate is None:
        return f"{'-':>10} {'-':>9} {'-':>15}"
    ratio = f"{m.settled_ratio:.2f}x" if m.settled_ratio is not None else "-"
    return f"{m.settled_seconds:>8.2f} s {m.settled_rate:>9,.0f} {ratio:>15}"


def render(reports: list[BackendReport], args: argparse.Namespace) -> tuple[str, list[str]]:
    lines = [
        "",
        f"Figures ({args.rows:,} rows per table; every method on a freshly rebuilt copy of the same table)",
        "",
    ]
    purged = any(m.settled_seconds is not None for r in reports for m in r.methods)
    header = (f"{'database':<9} {'method':<27} {'deleted':>9} {'seconds':>8} {'rows/s':>9} "
              f"{'vs bare DELETE':>15} {'peak RSS':>9}")
    if purged:  # MariaDB: the same, counted until InnoDB's purge has removed the rows
        header += f" {'purged at':>10} {'rows/s':>9} {'vs bare, purged':>15}"
    lines += [header, "-" * len(header)]
    for report in reports:
        for m in report.methods:
            ratio = f"{m.ratio:.2f}x" if m.ratio is not None else "-"
            rss = f"{m.max_rss_mb:.0f} MB" if m.max_rss_mb else ""
            line = (f"{report.name:<9} {m.method:<27} {m.deleted:>9,} {m.seconds:>8.2f} {m.rate:>9,.0f} "
                    f"{ratio:>15} {rss:>9}")
            if purged:
                line += " " + purged_columns(m)
            lines.append(line)
    if purged:
        lines.append("seconds, rows/s: to the method's last commit; purged at, rows/s, vs bare, purged (MariaDB): "
                     "seconds from the method's start until InnoDB's purge had removed the deleted rows "
                     "(purge_del_mark_records), which the bare DELETE leaves for after its commit")
    lines += [f"{r.name} {m.method}: {m.note}" for r in reports for m in r.methods if m.note]
    lines += [f"{r.name} {m.method}: {m.left_over:,} purgeable rows left behind" for r in reports
              for m in r.methods if m.left_over]
    lines.append("")
    header = (f"{'database':<9} {'poll (no idx)':>14} {'poll (idx)':>12} {'RSS 10k rows':>13} "
              f"{'longest write txn':>18} {'txns > 0.5 s':>13} {'app p50/p99 idle':>17} {'app p50/p99 purge':>18}")
    lines += [header, "-" * len(header)]
    for r in reports:
        p = r.profile
        idle = f"{r.idle.p50_ms:.2f}/{r.idle.p99_ms:.2f} ms" if r.idle else "-"
        during = f"{r.during.p50_ms:.2f}/{r.during.p99_ms:.2f} ms" if r.during else "-"
        lines.append(
            f"{r.name:<9} {r.build['stats_without_indexes']:>12.3f} s {r.build['stats_with_indexes']:>10.3f} s "
            f"{(f'{r.rss_small_mb:.0f} MB' if r.rss_small_mb else '-'):>13} "
            f"{(f'{p.longest_write:.3f} s' if p else '-'):>18} "
            f"{(f'{p.write_over_limit} of {p.write_transactions}' if p else '-'):>13} {idle:>17} {during:>18}"
        )
    for r in reports:
        if r.stats_full:
            lines.append(f"{r.name}: statistics: the daemon's per-poll refresh (terminal counts reused) "
                         f"{r.build['stats_without_indexes']:.3f} s without the indexes, "
                         f"{r.build['stats_with_indexes']:.3f} s with; a full recount (--stats-only, and the "
                         f"daemon every REAPER_TOTALS_INTERVAL_SECONDS) {r.stats_full['without indexes']:.3f} s "
                         f"without, {r.stats_full['with indexes']:.3f} s with")
    for r in reports:
        for label, parts in r.stats_parts.items():
            lines.append(f"{r.name}: one statistics refresh {label}, query by query: "
                         + "; ".join(f"{name} {seconds:.3f} s" for name, seconds in parts.items()))
    for r in reports:
        for label, p in (("profiled run", r.profile), ("profiled run under app load", r.profile_under_load)):
            if p is None:
                continue
            lines += ["", f"{r.name}: where reaper's time went ({label}, {p.wall:.2f} s inside main(); "
                          f"{p.write_transactions} write transactions, longest {p.longest_write:.3f} s; "
                          f"longest gap between batch log lines {p.longest_batch_gap:.3f} s)"]
            accounted = 0.0
            for kind, (count, total, longest) in sorted(p.statements.items(), key=lambda item: -item[1][1]):
                accounted += total
                lines.append(f"  {kind:<16} {int(count):>7} statements {total:>8.2f} s "
                             f"({100 * total / p.wall:4.1f} %), {1000 * total / max(count, 1):7.2f} ms each, "
                             f"longest {longest:.3f} s")
            for name, (count, total) in sorted(p.calls.items(), key=lambda item: -item[1][1]):
                accounted += total
                lines.append(f"  {name:<16} {int(count):>7} calls      {total:>8.2f} s "
                             f"({100 * total / p.wall:4.1f} %), {1000 * total / max(count, 1):7.2f} ms each")
            rest = p.wall - accounted
            lines.append(f"  {'the rest':<16} {'':>7}            {rest:>8.2f} s ({100 * rest / p.wall:4.1f} %): "
                         "Python, SQLAlchemy compiling and result rows, logging, start-up and reflection"
                         + ("; on SQLite also the fetching of the selected rows (sqlite3 steps lazily)"
                            if r.name == "sqlite" else ""))
    goals = goal_lines(reports, args)
    return "\n".join(lines + [""] + goals), goals


def goal_lines(reports: list[BackendReport], args: argparse.Namespace) -> list[str]:
    goals = []
    at_10m = args.rows >= TEN_MILLION
    for r in reports:
        bare, mine = r.method("bare DELETE"), r.method("reaper --once")
        p = r.profile
        tag = f"[{r.name}, {r.rows:,} rows]"
        if bare and mine and bare.rate:
            ratio = mine.rate / bare.rate
            why = ""
            if ratio < GOAL_RATE_RATIO and p is not None:
                batches = max(p.write_transactions, 1)
                why = (f" ({ratio:.2f}x): {p.write_transactions} batches at "
                       f"{1000 * p.wall / batches:.1f} ms each, of which "
                       f"{1000 * p.statements.get('delete', [0, 0.0])[1] / batches:.1f} ms in the DELETE, "
                       f"{1000 * p.statements.get('segment select', [0, 0.0])[1] / batches:.1f} ms in the "
                       f"segment SELECT, {1000 * p.calls.get('commit', [0, 0.0])[1] / batches:.1f} ms committing; "
                       "see 'where reaper's time went'")
            elif ratio < GOAL_RATE_RATIO:
                why = f" ({ratio:.2f}x)"
            if ratio < GOAL_RATE_RATIO and mine.cores_busy is not None and bare.cores_busy is not None:
                why += cpu_why(mine, bare)
            goals.append(f"GOAL {tag} reaper purges at >= {GOAL_RATE_RATIO} of the bare DELETE's rate: "
                         + (f"met ({ratio:.2f}x)" if ratio >= GOAL_RATE_RATIO else f"MISSED{why}"))
            if r.name == "mariadb":
                goals.append(settled_goal(tag, bare, mine))
        if p is not None:
            loaded = r.profile_under_load
            worst = max(p.longest_write, loaded.longest_write if loaded else 0.0)
            detail = f"alone: longest write transaction {p.longest_write:.3f} s, {p.write_over_limit} over"
            if loaded:
                detail += (f"; while the application updates: longest {loaded.longest_write:.3f} s, "
                           f"{loaded.write_over_limit} over")
                if r.name == "sqlite" and loaded.longest_write > GOAL_LONGEST_TRANSACTION:
                    detail += " (waiting for SQLite's database-wide write lock inside the DELETE)"
            verdict = "met" if worst <= GOAL_LONGEST_TRANSACTION else "MISSED"
            goals.append(f"GOAL {tag} no transaction longer than {GOAL_LONGEST_TRANSACTION} s: {verdict} ({detail})")
        pts = [m for m in r.methods if m.method.startswith("pt-archiver")]
        if r.name != "mariadb":
            goals.append(f"GOAL {tag} several (>= {GOAL_PT_SPEEDUP:g}) times faster than pt-archiver in every mode: "
                         "not measured (pt-archiver is for MySQL and MariaDB)")
        elif not pts or not mine:
            goals.append(f"GOAL {tag} several (>= {GOAL_PT_SPEEDUP:g}) times faster than pt-archiver in every mode: "
                         "not measured (--skip-pt-archiver)")
        else:
            speedups = {m.method: mine.rate / m.rate for m in pts if m.rate}
            text = ", ".join(f"{speedup:.2f}x {name}" for name, speedup in speedups.items())
            ok = all(speedup >= GOAL_PT_SPEEDUP for speedup in speedups.values())  # on the commit-time rates
            settled = {m.method: mine.settled_rate / m.settled_rate for m in pts
                       if mine.settled_rate and m.settled_rate}
            if settled:
                text += "; until InnoDB has removed the rows: " + ", ".join(
                    f"{speedup:.2f}x {name}" for name, speedup in settled.items())
            goals.append(f"GOAL {tag} several (>= {GOAL_PT_SPEEDUP:g}) times faster than pt-archiver in every mode: "
                         + (f"met ({text})" if ok else f"MISSED ({text})"))
        if mine and mine.max_rss_mb:
            flat = ""
            flat_ok = True
            if r.rss_small_mb:
                flat_ok = mine.max_rss_mb <= GOAL_RSS_FLAT * r.rss_small_mb
                flat = f", {r.rss_small_mb:.0f} MB at {RSS_SMALL_ROWS:,} rows"
            size = "" if at_10m else f" (measured at {r.rows:,} rows; 10 M not run)"
            ok = mine.max_rss_mb < GOAL_RSS_MB and flat_ok
            goals.append(f"GOAL {tag} reaper's RSS under {GOAL_RSS_MB:g} MB at 10 M rows, flat in size: "
                         + ("met" if ok else "MISSED") + f" ({mine.max_rss_mb:.0f} MB{flat}){size}")
        with_idx = r.build.get("stats_with_indexes")
        if with_idx is not None:
            full = r.stats_full.get("with indexes")
            recount = "" if full is None else f"; full recount (every REAPER_TOTALS_INTERVAL_SECONDS) {full:.3f} s"
            if at_10m:
                ok, detail = with_idx < GOAL_STATS_SECONDS, f"per poll {with_idx:.3f} s{recount}"
            elif r.rows < 1_000_000:
                ok, detail = None, f"{with_idx:.3f} s at {r.rows:,} rows: too small a table to project to 10 M{recount}"
            else:
                projected = with_idx * TEN_MILLION / r.rows
                ok = projected < GOAL_STATS_SECONDS
                detail = (f"per poll {with_idx:.3f} s at {r.rows:,} rows; it reads the active rows, which grow with "
                          f"the table in this data set: about {projected:.2f} s at 10 M (projected, not measured)"
                          f"{recount}")
            verdict = "not measured" if ok is None else "met" if ok else "MISSED"
            goals.append(f"GOAL {tag} statistics refresh (the daemon's per-poll refresh) "
                         f"under {GOAL_STATS_SECONDS:g} s "
                         f"at 10 M rows with the indexes: {verdict} ({detail})")
        if r.idle and r.during:
            ratio = r.during.p99_ms / r.idle.p99_ms if r.idle.p99_ms else math.inf
            detail = (f"p99 {r.during.p99_ms:.2f} ms during the purge vs {r.idle.p99_ms:.2f} ms idle = {ratio:.2f}x; "
                      f"p50 {r.during.p50_ms:.2f} vs {r.idle.p50_ms:.2f} ms; "
                      f"the longest update {r.during.max_ms:.0f} ms "
                      f"during, {r.idle.max_ms:.0f} ms idle; {r.during.samples:,} updates during the purge")
            if r.during_errors:
                detail += f"; {r.during_errors} updates failed"
            if mine and mine.cores_busy is not None:
                detail += (f"; reaper's purge alone kept {mine.cores_busy:.0%} of the machine's cores busy "
                           "(bench/app_latency.py cpu:N: busy cores alone)")
            goals.append(f"GOAL {tag} application p99 during a purge within {GOAL_P99_RATIO:g}x of idle: "
                         + ("met" if ratio <= GOAL_P99_RATIO and not r.during_errors else "MISSED") + f" ({detail})")
        elif r.idle:
            goals.append(f"GOAL {tag} application p99 during a purge within {GOAL_P99_RATIO:g}x of idle: MISSED "
                         "(no update finished while reaper purged)")
    return goals


def cpu_why(mine: MethodResult, bare: MethodResult) -> str:
    """The CPU side of a missed rate on MariaDB: how busy the cores were, and the server's CPU time."""
    text = (f"; the machine's cores were {mine.cores_busy:.0%} busy until reaper's last commit "
            f"({bare.cores_busy:.0%} for the bare DELETE), the server used {mine.server_cpu:.1f} s of CPU "
            f"(the bare DELETE {bare.server_cpu:.1f} s)")
    if (mine.cores_busy or 0) >= CORES_SATURATED and (mine.server_cpu or 0) >= 1.5 * (bare.server_cpu or 0):
        text += (": InnoDB's purge removed rows beside the deletes, on the same cores, work the bare DELETE "
                 "leaves for after its commit (bench/purge_lag.py)")
    return text


def settled_goal(tag: str, bare: MethodResult, mine: MethodResult) -> str:
    """The rate goal again, each rate counted until InnoDB's purge has removed the deleted rows."""
    head = (f"GOAL {tag} reaper purges at >= {GOAL_RATE_RATIO} of the bare DELETE's rate, counted until InnoDB "
            "has removed the rows: ")
    if not (mine.settled_rate and bare.settled_rate and bare.settled_seconds and mine.settled_seconds):
        return head + f"not measured (InnoDB's purge was not done {MariaDBBackend.PURGED_LIMIT:g} s after a method)"
    ratio = mine.settled_rate / bare.settled_rate
    detail = (f"{ratio:.2f}x: reaper {mine.settled_rate:,.0f} rows/s, purged {mine.settled_seconds:.2f} s after "
              f"its start (last commit {mine.seconds:.2f} s); bare DELETE {bare.settled_rate:,.0f} rows/s, purged "
              f"{bare.settled_seconds:.2f} s after its start (commit {bare.seconds:.2f} s)")
    return head + ("met" if ratio >= GOAL_RATE_RATIO else "MISSED") + f" ({detail})"


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return {"cpus": str(os.cpu_count()), "cpu": cpu, "memory": mem, "python": platform.python_version(),
            "os": platform.platform()}


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the table (default 1,000,000)")
    parser.add_argument("--databases", default="sqlite,mariadb", help="comma-separated: sqlite, mariadb")
    parser.add_argument("--indexes", action=argparse.BooleanOptionalAction, default=True,
                        help="purge tables carry the recommended indexes (default; the statistics are timed both ways)")
    parser.add_argument("--skip-pt-archiver", action="store_true", help="do not run pt-archiver (MariaDB)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer samples, no small-table RSS baseline: for the smoke test")
    parser.add_argument("--batch-size", type=int, help="passed to reaper (default: reaper's own, 1000)")
    parser.add_argument("--reaper-flags", default="",
                        help="more flags for every reaper run, e.g. '--sleep 0.02 --batch-time 0.05'")
    parser.add_argument("--extra-batch-sizes", default="10000",
                        help="also time reaper with these --batch-size values, for comparison (default 10000; '' none)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"what to run (default all): {', '.join(METHODS)}; the statistics are always timed")
    parser.add_argument("--latency-updates", type=int, help="idle application updates (default 2000; 200 with --quick)")
    parser.add_argument("--latency-updates-max", type=int, default=200_000,
                        help="cap on the updates made while reaper purges (default 200,000)")
    parser.add_argument("--app-pause", type=float, default=0.001, help="pause between application updates (s)")
    parser.add_argument("--stats-repeats", type=int,
                        help="timed statistics refreshes, median (default 5; 1 with --quick)")
    parser.add_argument("--timeout", type=float, default=1200.0, help="limit for each child process (s)")
    parser.add_argument("--mariadb-buffer-pool-mb", type=int, default=1024)
    parser.add_argument("--mariadb-durable", action=argparse.BooleanOptionalAction, default=True,
                        help="innodb_flush_log_at_trx_commit=1 as in production (default)")
    parser.add_argument("--json-out", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--workdir", type=Path, help="keep the working files here (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.rows < 100:
        parser.error("--rows must be at least 100")
    args.databases = [name.strip() for name in args.databases.split(",") if name.strip()]
    unknown = set(args.databases) - {"sqlite", "mariadb"}
    if unknown:
        parser.error(f"unknown database(s): {', '.join(sorted(unknown))}")
    args.methods = [name.strip() for name in args.methods.split(",") if name.strip()]
    if set(args.methods) - set(METHODS):
        parser.error(f"unknown method(s): {', '.join(sorted(set(args.methods) - set(METHODS)))}")
    args.extra_batch_sizes = [int(size) for size in args.extra_batch_sizes.split(",") if size.strip()]
    if args.quick:
        args.extra_batch_sizes = []
    args.latency_updates = args.latency_updates or (200 if args.quick else 2000)
    args.stats_repeats = args.stats_repeats or (1 if args.quick else 5)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the servers are stopped
    for key in [key for key in os.environ if key.startswith("REAPER_")]:
        del os.environ[key]  # the benchmark's settings only
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="reaper-bench-"))
    compileall.compile_dir(REPO / "reaper", quiet=1)  # see child_env
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)  # no .env of the caller's, and reaper's audit log lands here
    started = time.perf_counter()
    bench = Bench(args, workdir)
    reports: list[BackendReport] = []
    try:
        for name in args.databases:
            backend_dir = workdir / name
            backend_dir.mkdir(exist_ok=True)
            if name == "mariadb":
                if not args.skip_pt_archiver and shutil.which("pt-archiver") is None:
                    raise SystemExit("pt-archiver not found: apt-get install -y --no-install-recommends "
                                     "percona-toolkit, or pass --skip-pt-archiver")
                backend: Backend = MariaDBBackend(args.rows, backend_dir, args.indexes,
                                                  args.mariadb_buffer_pool_mb, args.mariadb_durable)
            else:
                backend = SQLiteBackend(args.rows, backend_dir, args.indexes)
            try:
                reports.append(bench.run_backend(backend))
            finally:
                backend.close()
    finally:
        if args.workdir is None:
            os.chdir("/")
            shutil.rmtree(workdir, ignore_errors=True)
    text, goals = render(reports, args)
    print(f"reaper purge benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
          f"{' '.join(sys.argv)}")
    info = machine()
    print(f"machine: {info['cpus']} CPUs ({info['cpu']}), {info['memory']} RAM, Python {info['python']}, {info['os']}")
    for r in reports:
        print(f"{r.name}: {r.version}")
        print(f"  built {r.rows:,} rows in {r.build['fill']:.1f} s, indexes in {r.build['indexes']:.1f} s; "
              f"{r.purgeable:,} to purge ({100 * r.purgeable / r.rows:.1f} %); indexes: "
              + "; ".join(r.index_statements))
    print(text)
    print(f"\ntotal time {time.perf_counter() - started:.0f} s")
    if args.json_out:
        args.json_out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                             "machine": info, "reports": [asdict(r) for r in reports],
                                             "goals": goals}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
