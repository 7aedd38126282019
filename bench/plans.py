#!/usr/bin/env python3
"""Benchmark reaper on the tables people have: every index set, every plan, against the plain statement.

For each database asked for (SQLite, MariaDB, PostgreSQL), each index set (``recommended``: the
indexes ``reaper --check-indexes`` recommends; ``app``: the application's own (status, created_at)
only; ``pk``: the primary key alone) and each shape of table (``purge80``: 80 % of the rows are
successes past their retention; ``scattered3``: 3 % are, scattered among recent ones; ``zombies``: 5 %
are running tasks past the 24-hour limit; and, asked for by ``--shapes``, ``purge20``: 20 % are, just
under the density at which a purge walks the primary key instead of its index), the script builds
a ``processing_tasks`` table of ``--rows`` rows and times, side by side on fresh copies of the same
table:

- ``dry``: ``reaper --once --dry-run --json`` against a process that imports SQLAlchemy, connects with
  the same driver and runs the same four ``COUNT(*)`` queries (goal: at most 2x its time);
- ``purge`` (purge80, scattered3, purge20): ``reaper --once --yes`` against one bare ``DELETE`` with the same
  condition, each from its process's start; on MariaDB both until InnoDB's purge has removed the rows
  (goal: at least 0.5x its rate, 0.9x where the recommended indexes exist);
- ``zombies``: ``reaper --once --yes`` against one bare ``UPDATE`` setting them to failure with the error
  text reaper writes (goal: 0.5x).

Each line gives reaper's time, the plain statement's, the ratio and the plan reaper chose (from its
``plan:`` log line). ``--repeat N`` runs each side N times, in turns (each write on its own fresh
copy), and counts the medians; ``--write-flags '--batch-time 2'`` adds flags to reaper's real
run; ``--json-out FILE`` keeps every figure and every run; ``--compare
FILE`` (a run at another size) prints how each figure grew (goal: a 10x larger table within 12x the
time).

    python bench/plans.py --rows 1000000                     # every cell, about 20-30 minutes here
    python bench/plans.py --rows 3000 --databases sqlite     # the smoke test
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO), str(REPO / "bench")]

import steal  # noqa: E402  (bench/steal.py, after the sys.path line above)

TABLE, TEMPLATE = "processing_tasks", "plans_template"
NOW = datetime.now(UTC).replace(microsecond=0, tzinfo=None)  # naive UTC, as the columns store it
INDEX_SETS = {
    "recommended": ["(status, started_at, id)", "(status, created_at, id)", "(status, completed_at, id)",
                    "(created_at)"],
    "app": ["(status, created_at)"],
    "pk": [],
}
SHAPES = ("purge80", "scattered3", "zombies")  # the default matrix
KNOWN_SHAPES = (*SHAPES, "purge20")
OLD_TENTHS = {"purge80": 8, "purge20": 2}  # the tenths of the ids past their retention, in a row
GOALS = {"dry": 2.0, "purge": 0.5, "purge_recommended": 0.9, "zombies": 0.5}
SUCCESS, FAILURE, RUNNING, PENDING = (["success", "SUCCESS", "Success"], ["failure", "FAILURE", "Failure"],
                                      ["running", "RUNNING", "Running"], ["pending", "PENDING", "Pending"])


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def cut(**delta: float) -> str:
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%d %H:%M:%S")


# --- the databases -----------------------------------------------------------------------------------------


@dataclass
class Database:
    """One database: its URL, how it writes SQL the script needs, and how it waits for its own purge."""

    name: str
    url: str
    engine: Engine
    stop: Callable[[], None]
    server: Any = None  # tests/servers.py's server: its root session reads InnoDB's metrics

    def seconds_before(self, seconds: str) -> str:
        """SQL for NOW less ``seconds`` (an SQL integer expression)."""
        moment = NOW.strftime("%Y-%m-%d %H:%M:%S")
        if self.name == "sqlite":
            return f"datetime('{moment}', '-' || ({seconds}) || ' seconds')"
        if self.name == "mariadb":
            return f"(TIMESTAMP('{moment}') - INTERVAL ({seconds}) SECOND)"
        return f"(TIMESTAMP '{moment}' - make_interval(secs => ({seconds})))"

    def numbers(self, rows: int) -> str:
        """A FROM clause giving n = 1 .. rows."""
        if self.name == "sqlite":
            return f"(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {rows}) SELECT n FROM s)"
        if self.name == "mariadb":
            return f"(SELECT seq AS n FROM seq_1_to_{rows}) AS numbers"
        return f"generate_series(1::bigint, {rows}) AS g(n)"

    def run(self, *statements: str) -> None:
        with self.engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)

    def analyze(self) -> None:
        self.run({"sqlite": "ANALYZE", "mariadb": f"ANALYZE TABLE {TABLE}"}.get(self.name, f"ANALYZE {TABLE}"))

    def purge_counter(self) -> int | None:
        """InnoDB's count of delete-marked rows it has purged (MariaDB only)."""
        if self.name != "mariadb":
            return None
        return self._metrics()["purge_del_mark_records"]

    def _metrics(self) -> dict[str, int]:
        with self.server._admin() as admin, admin.cursor() as cursor:
            cursor.execute("SELECT name, count FROM information_schema.INNODB_METRICS "
                           "WHERE name IN ('purge_del_mark_records', 'trx_rseg_history_len')")
            return {str(name): int(count) for name, count in cursor.fetchall()}

    def wait_purged(self, mark: int | None, rows: int | None, limit: float = 300.0) -> None:
        """Wait until InnoDB's purge has removed ``rows`` rows since ``mark``, or its history is empty
        (``rows`` None: the history alone, for an update's old index entries)."""
        if mark is None:
            return
        deadline = time.perf_counter() + limit
        while time.perf_counter() < deadline:
            metrics = self._metrics()
            removed = rows is not None and metrics["purge_del_mark_records"] - mark >= rows
            if removed or metrics["trx_rseg_history_len"] == 0:
                return
            time.sleep(0.1)
        log(f"{self.name}: InnoDB's purge did not finish within {limit:.0f} s")


@contextmanager
def database(name: str, workdir: Path, rows: int) -> Iterator[Database]:
    """Start (or open) the database ``name`` for the benchmark; stop it at the end."""
    import servers  # tests/servers.py: MariaDB and PostgreSQL as plain processes on 127.0.0.1

    if name == "sqlite":
        url = f"sqlite:///{workdir / 'plans.sqlite3'}"
        engine = create_engine(url)
        yield Database(name, url, engine, engine.dispose)
        engine.dispose()
        return
    server = servers.start_mariadb() if name == "mariadb" else servers.start_postgresql()
    try:
        server.create_database("bench")
        url = server.url("bench")
        engine = create_engine(url, pool_pre_ping=True)
        if name == "mariadb":  # durable commits and a pool that holds the table, as in production
            pool = max(1024, rows // 1000) * 1024 * 1024
            with server._admin() as admin, admin.cursor() as cursor:  # as root: reaper's user has no SUPER
                cursor.execute(f"SET GLOBAL innodb_buffer_pool_size = {pool}")
                cursor.execute("SET GLOBAL innodb_flush_log_at_trx_commit = 1")
                cursor.execute("SET GLOBAL innodb_monitor_enable = 'module_purge'")
        yield Database(name, url, engine, engine.dispose, server)
        engine.dispose()
    finally:
        server.stop()


# --- the table ---------------------------------------------------------------------------------------------


def row_select(db: Database, rows: int, shape: str) -> str:
    """The SELECT that makes the rows of ``shape``: ids in order, ages spread by a hash of the id."""
    def mod(a: str, b: int) -> str:  # '%' would be a parameter marker to PyMySQL and psycopg
        return f"({a} % {b})" if db.name == "sqlite" else f"MOD({a}, {b})"

    spread = mod("n * 7919", 997)  # 0..996, no pattern an index could exploit
    if shape in OLD_TENTHS:
        old = f"({mod('n', 10)} < {OLD_TENTHS[shape]})"
    elif shape == "scattered3":
        old = f"({spread} < 30)"
    else:
        old = "0 = 1"
    zombie = f"({spread} < 50)" if shape == "zombies" else "0 = 1"
    finished_ago = f"CASE WHEN {old} THEN 3456000 + {spread} * 60 ELSE 86400 + {spread} * 60 END"
    created = db.seconds_before(f"CASE WHEN {zombie} THEN 108000 + {spread} ELSE {finished_ago} + 600 END")
    started = db.seconds_before(f"CASE WHEN {zombie} THEN 108000 + {spread} - 60 ELSE {finished_ago} + 300 END")
    completed = f"CASE WHEN {zombie} THEN NULL ELSE {db.seconds_before(finished_ago)} END"
    status = f"CASE WHEN {zombie} THEN 'running' ELSE 'success' END"
    task_type = f"CASE {mod('n', 3)} WHEN 0 THEN 'download' WHEN 1 THEN 'extract_audio' ELSE 'generate_srt' END"
    return (f"SELECT {status}, {task_type}, {created}, {started}, {completed}, {completed} "
            f"FROM {db.numbers(rows)}")


def build_template(db: Database, rows: int, shape: str) -> None:
    """Create the template table of ``shape`` (no secondary index), which every copy is made from."""
    serials = {"sqlite": "INTEGER PRIMARY KEY", "mariadb": "INT AUTO_INCREMENT PRIMARY KEY"}
    serial = serials.get(db.name, "SERIAL PRIMARY KEY")
    stamp = "DATETIME(6)" if db.name == "mariadb" else "TIMESTAMP"
    columns = (f"id {serial}, status VARCHAR(20) NOT NULL, task_type VARCHAR(32), created_at {stamp} NOT NULL, "
               f"started_at {stamp} NULL, completed_at {stamp} NULL, updated_at {stamp} NULL, error_message TEXT")
    # the copy first: on PostgreSQL it shares the template's id sequence
    db.run(f"DROP TABLE IF EXISTS {TABLE}", f"DROP TABLE IF EXISTS {TEMPLATE}")
    db.run(f"CREATE TABLE {TEMPLATE} ({columns})")
    db.run(f"INSERT INTO {TEMPLATE} (status, task_type, created_at, started_at, completed_at, updated_at) "
           + row_select(db, rows, shape))


def fresh_copy(db: Database, index_set: str) -> None:
    """Make ``processing_tasks`` a fresh copy of the template with ``index_set``'s indexes, analyzed."""
    db.run(f"DROP TABLE IF EXISTS {TABLE}")
    if db.name == "mariadb":
        db.run(f"CREATE TABLE {TABLE} LIKE {TEMPLATE}", f"INSERT INTO {TABLE} SELECT * FROM {TEMPLATE}")
    elif db.name == "postgresql":
        db.run(f"CREATE TABLE {TABLE} (LIKE {TEMPLATE} INCLUDING ALL)", f"INSERT INTO {TABLE} SELECT * FROM {TEMPLATE}")
    else:
        with db.engine.connect() as conn:
            schema = conn.exec_driver_sql(f"SELECT sql FROM sqlite_master WHERE name = '{TEMPLATE}'").scalar_one()
        db.run(schema.replace(TEMPLATE, TABLE, 1), f"INSERT INTO {TABLE} SELECT * FROM {TEMPLATE}")
    for number, columns in enumerate(INDEX_SETS[index_set]):
        db.run(f"CREATE INDEX ix_bench_{number} ON {TABLE} {columns}")
    db.analyze()
    if db.name == "postgresql":  # a table in service is vacuumed: its visibility map lets index-only scans be
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"VACUUM {TABLE}")
    if db.name == "mariadb":
        time.sleep(0.5)  # let the copy's own purge start before anything is timed


# --- the methods --------------------------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    # reaper runs as an installed package does, from compiled bytecode (main() compiles it once), as
    # SQLAlchemy on the plain side does: PYTHONDONTWRITEBYTECODE would make every reaper process compile
    # reaper's modules again (about 0.2 s of each start here)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("REAPER_") and key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


def timed_process(argv: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=3600,
                          stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ... exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds, done


def in_list(values: list[str]) -> str:
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


def _age(first: str) -> str:
    return f"COALESCE({first}, updated_at, created_at)"


def conditions() -> dict[str, str]:
    """The four default policies' whole conditions, as reaper writes them (its default columns)."""
    return {
        "running_timeout": f"status IN {in_list(RUNNING)} AND {_age('started_at')} < '{cut(hours=24)}'",
        "pending_timeout": f"status IN {in_list(PENDING)} AND created_at < '{cut(hours=2)}'",
        "failure_retention": f"status IN {in_list(FAILURE)} AND {_age('completed_at')} < '{cut(days=7)}'",
        "success_retention": f"status IN {in_list(SUCCESS)} AND {_age('completed_at')} < '{cut(days=30)}'",
    }


PLAIN = """
import sys
from sqlalchemy import create_engine
engine = create_engine(sys.argv[1])
with engine.begin() as conn:
    for statement in sys.argv[2:]:
        conn.exec_driver_sql(statement).close()
"""


def plain(db: Database, statements: Sequence[str], cwd: Path) -> float:
    seconds, _ = timed_process([sys.executable, "-c", PLAIN, db.url, *statements], cwd)
    return seconds


def reaper(db: Database, flags: Sequence[str], cwd: Path) -> tuple[float, dict[str, Any], str]:
    argv = [sys.executable, "-m", "reaper", "--once", "--json", "--database-url", db.url, *flags]
    argv += ["--log-level", "DEBUG"]  # the plan line is logged at DEBUG
    seconds, done = timed_process(argv, cwd)
    plan = re.search(r"plan: (.*)", done.stderr)
    return seconds, json.loads(done.stdout), short_plan(plan.group(1)) if plan else "?"


def short_plan(line: str) -> str:
    """``running_timeout: index ix (...); ...`` -> ``running ix, pending pk walk, ...``."""
    parts = []
    for part in line.split("; "):
        name, _, how = part.partition(": ")
        found = re.match(r"index (\S+)", how)
        parts.append(f"{name.split('_')[0]} {found.group(1) if found else 'pk walk'}")
    return ", ".join(parts)


def changed(document: dict[str, Any]) -> int:
    return sum(int(policy["affected"]) for policy in document["policies"].values())


# --- one cell ------------------------------------------------------------------------------------------------


@dataclass
class Figure:
    database: str
    rows: int
    shape: str
    index_set: str
    measure: str  # dry, purge, zombies
    reaper_seconds: float
    plain_seconds: float
    ratio: float  # plain / reaper for writes (rate), reaper / plain for the dry run (time)
    goal: str
    met: bool
    plan: str
    rows_changed: int
    reaper_runs: list[float] = field(default_factory=list)  # every run of each side, when repeated
    plain_runs: list[float] = field(default_factory=list)
    reaper_to_exit: float | None = None  # a write's median seconds to its process's end, before InnoDB's purge
    plain_to_exit: float | None = None
    host_steal: float | None = None  # the share of the CPU the host took while both sides ran (bench/steal.py)


def _goal(measure: str, index_set: str) -> tuple[str, float]:
    if measure == "dry":
        return f"<= {GOALS['dry']:g}x the counts' time", GOALS["dry"]
    key = "purge_recommended" if measure == "purge" and index_set == "recommended" else measure
    return f">= {GOALS[key]:g}x the plain statement's rate", GOALS[key]


def figure(db: Database, rows: int, shape: str, index_set: str, measure: str, mine: float, theirs: float,
           plan: str, changed_rows: int, stolen: float | None = None) -> Figure:
    text_goal, bound = _goal(measure, index_set)
    ratio = mine / theirs if measure == "dry" else theirs / mine
    met = ratio <= bound if measure == "dry" else ratio >= bound
    found = Figure(db.name, rows, shape, index_set, measure, mine, theirs, ratio, text_goal, met, plan, changed_rows,
                   host_steal=stolen)
    log(f"{db.name} {rows:,} {shape} {index_set} {measure}: reaper {mine:.2f} s, plain {theirs:.2f} s, "
        f"{ratio:.2f}x ({'met' if met else 'MISSED'} {text_goal}); {changed_rows:,} rows; plan {plan}"
        + steal.beside(stolen))
    return found


def _dry_side_by_side(db: Database, cwd: Path, repeat: int) -> tuple[list[float], list[float], dict[str, Any], str]:
    """Time reaper's dry run and the plain counts ``repeat`` times each, in turns (nothing is written)."""
    everything = [f"SELECT COUNT(*) FROM {TABLE} WHERE {c}" for c in conditions().values()]
    mine: list[float] = []
    theirs: list[float] = []
    for _ in range(repeat):
        seconds, document, plan = reaper(db, ["--dry-run"], cwd)
        mine.append(seconds)
        theirs.append(plain(db, everything, cwd))
    return mine, theirs, document, plan


def _plain_write(shape: str) -> str:
    if shape != "zombies":
        c = conditions()
        return f"DELETE FROM {TABLE} WHERE ({c['success_retention']}) OR ({c['failure_retention']})"
    # The text reaper writes into the error column (see reaper.engine.writes.failure_reason), so that
    # both sides write rows of the same size: a 22-character text made the bare UPDATE half the work.
    reason = (f"reaper running_timeout: running for over the 24 h limit (started_at before {cut(hours=24)} UTC); "
              f"set to failure at {cut()} UTC")
    return (f"UPDATE {TABLE} SET status = 'failure', completed_at = '{cut()}', updated_at = '{cut()}', "
            f"error_message = '{reason}' WHERE {conditions()['running_timeout']}")


@dataclass
class Runs:
    """Each side's seconds per run: until InnoDB's purge caught up (the figure), and to the process's end."""

    mine: list[float] = field(default_factory=list)
    theirs: list[float] = field(default_factory=list)
    mine_to_exit: list[float] = field(default_factory=list)
    theirs_to_exit: list[float] = field(default_factory=list)


def _until_purged(db: Database, mark: int | None, started: float, rows: int | None) -> tuple[float, float]:
    """A write's seconds from ``started`` until InnoDB's purge has caught up with it (``wait_purged``
    from ``mark``), and to now, its process's end."""
    to_exit = time.perf_counter() - started
    db.wait_purged(mark, rows)
    return time.perf_counter() - started, to_exit


@dataclass(frozen=True)
class Options:
    """How each cell is run: how many times each side, and flags added to reaper's real run."""

    repeat: int = 1
    write_flags: tuple[str, ...] = ()


def _writes_side_by_side(
    db: Database, shape: str, index_set: str, cwd: Path, options: Options
) -> tuple[Runs, dict[str, Any], str]:
    """Time ``reaper --once --yes`` (with ``options.write_flags``) and the plain statement
    ``options.repeat`` times each, in turns, each on a fresh copy of the table, on MariaDB until
    InnoDB's purge has caught up, both sides: the deleted rows removed, or for a fail (whose update
    of indexed columns leaves their old index entries to the purge), the history list empty. The
    bare statement leaves that work for after its commit; a batched run does it as it goes."""
    runs = Runs()
    for _ in range(options.repeat):
        fresh_copy(db, index_set)
        mark, started = db.purge_counter(), time.perf_counter()
        _, document, plan = reaper(db, ["--yes", *options.write_flags], cwd)
        deleted = changed(document) if shape != "zombies" else None
        seconds, to_exit = _until_purged(db, mark, started, deleted)
        runs.mine.append(seconds)
        runs.mine_to_exit.append(to_exit)
        fresh_copy(db, index_set)
        mark, started = db.purge_counter(), time.perf_counter()
        plain(db, [_plain_write(shape)], cwd)
        seconds, to_exit = _until_purged(db, mark, started, deleted)
        runs.theirs.append(seconds)
        runs.theirs_to_exit.append(to_exit)
    return runs, document, plan


def measure_cell(
    db: Database, rows: int, shape: str, index_set: str, cwd: Path, options: Options = Options()
) -> list[Figure]:
    """The cell's dry run and its writes, each side the median of ``options.repeat`` runs."""
    fresh_copy(db, index_set)
    meter = steal.StealMeter()
    mine, theirs, document, plan = _dry_side_by_side(db, cwd, options.repeat)
    matched = sum(int(policy["matched"]) for policy in document["policies"].values())
    found = [figure(db, rows, shape, index_set, "dry", median(mine), median(theirs), plan, matched, meter.share())]
    found[-1].reaper_runs, found[-1].plain_runs = mine, theirs
    meter.start()
    runs, document, plan = _writes_side_by_side(db, shape, index_set, cwd, options)
    measure = "zombies" if shape == "zombies" else "purge"
    found.append(figure(db, rows, shape, index_set, measure, median(runs.mine), median(runs.theirs), plan,
                        changed(document), meter.share()))
    found[-1].reaper_runs, found[-1].plain_runs = runs.mine, runs.theirs
    found[-1].reaper_to_exit, found[-1].plain_to_exit = median(runs.mine_to_exit), median(runs.theirs_to_exit)
    if db.name == "mariadb":
        log(f"  to each process's end: reaper {found[-1].reaper_to_exit:.2f} s, plain {found[-1].plain_to_exit:.2f} s, "
            f"{found[-1].plain_to_exit / found[-1].reaper_to_exit:.2f}x")
    return found


def table_lines(figures: list[Figure]) -> list[str]:
    lines = ["| database | rows | shape | indexes | measure | reaper | plain | ratio | goal | plan |",
             "|---|---:|---|---|---|---:|---:|---:|---|---|"]
    for f in figures:
        mark = "" if f.met else " **missed**"
        lines.append(
            f"| {f.database} | {f.rows:,} | {f.shape} | {f.index_set} | {f.measure} | {f.reaper_seconds:.2f} s "
            f"| {f.plain_seconds:.2f} s | {f.ratio:.2f}x{mark} | {f.goal} | {f.plan} |"
        )
    return lines


def growth_lines(figures: list[Figure], smaller: list[dict[str, Any]]) -> list[str]:
    before = {(f["database"], f["shape"], f["index_set"], f["measure"]): f for f in smaller}
    lines = ["| database | shape | indexes | measure | small | large | growth |", "|---|---|---|---|---:|---:|---:|"]
    for f in figures:
        old = before.get((f.database, f.shape, f.index_set, f.measure))
        if old:
            growth = f.reaper_seconds / old["reaper_seconds"]
            lines.append(f"| {f.database} | {f.shape} | {f.index_set} | {f.measure} | {old['reaper_seconds']:.2f} s "
                         f"| {f.reaper_seconds:.2f} s | {growth:.1f}x{'' if growth <= 12 else ' **over 12x**'} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--databases", default="sqlite,mariadb,postgresql")
    parser.add_argument("--index-sets", default=",".join(INDEX_SETS))
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--compare", type=Path, help="the --json-out of a run at another size")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side per cell, in turns; the medians count")
    parser.add_argument("--write-flags", default="", help="flags added to reaper's real run, e.g. '--batch-time 2'")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat: at least 1")
    unknown = set(args.shapes.split(",")) - set(KNOWN_SHAPES)
    if unknown:
        parser.error(f"--shapes: unknown {', '.join(sorted(unknown))} (known: {', '.join(KNOWN_SHAPES)})")
    compileall.compile_dir(REPO / "reaper", quiet=1)  # see child_env
    options = Options(args.repeat, tuple(shlex.split(args.write_flags)))
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="reaper-bench-plans-") as folder:
        workdir = Path(folder)
        for name in args.databases.split(","):
            with database(name, workdir, args.rows) as db:
                for shape in args.shapes.split(","):
                    log(f"{name}: building {args.rows:,} rows ({shape})")
                    build_template(db, args.rows, shape)
                    for index_set in args.index_sets.split(","):
                        figures += measure_cell(db, args.rows, shape, index_set, workdir, options)
    print("\n".join(table_lines(figures)))
    if args.compare:
        print("\n" + "\n".join(growth_lines(figures, json.loads(args.compare.read_text()))))
    if args.json_out:
        args.json_out.write_text(json.dumps([asdict(f) for f in figures], indent=1))
    missed = [f for f in figures if not f.met]
    print(f"\n{len(figures) - len(missed)} goals met, {len(missed)} missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
