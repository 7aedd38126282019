"""An application's single-row updates while a purge runs: which purge settings keep its latency low.

``bench/purge.py`` measures the application's p50/p99 during reaper's default purge; this script
compares, in one run on freshly rebuilt copies of the same table, the application's latency
while nothing else runs, during the bare DELETE, and during reaper with each given set of flags,
so that the cost of a purge setting (``--sleep``, ``--batch-time``) on the application is measured
side by side. The application is ``purge.AppLoad``: single-row ``UPDATE``s of recent rows, each its
own transaction, 1 ms apart. A method prefixed with ``held:`` runs (MariaDB only) while another
session holds a consistent snapshot open, which keeps InnoDB's purge from removing the deleted rows
meanwhile (diagnosis only: it shows what InnoDB's purge adds to the application's latency).
``cpu:N`` runs no purge: N processes that only spin on the CPU for ``--cpu-seconds`` (diagnosis: what
busy cores alone do to the application).

On MariaDB the application goes on after a purge's last commit until InnoDB's purge threads have
removed the deleted rows, and that stretch is reported on its own line (``... then until removed``):
one big DELETE leaves all of that work for after its commit.

Usage: ``python bench/app_latency.py --database mariadb --rows 1000000 bare "" "--sleep 0.05" held: cpu:2``
("" is reaper with its defaults).
"""

from __future__ import annotations

import argparse
import compileall
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests"), str(HERE.parent)]

import purge  # noqa: E402  (bench/purge.py: the table, its data, the servers and the application load)
from purge_lag import purge_held, run_method  # noqa: E402  (after the sys.path line above)

IDLE_UPDATES = 3000
MAX_UPDATES = 500_000


def describe(label: str, latencies: list[float], seconds: float | None = None) -> str:
    """One line: p50, p99, p99.9 and the longest update, and how many updates were made."""
    took = f"{seconds:7.2f} s " if seconds is not None else " " * 10
    if not latencies:
        return f"{label:<36} {took} no update finished"
    ms = sorted(value * 1000 for value in latencies)
    p999 = ms[min(len(ms) - 1, int(len(ms) * 0.999))]
    return (f"{label:<36} {took} p50 {purge.percentile(ms, 0.5):6.2f}  p99 {purge.percentile(ms, 0.99):7.2f}  "
            f"p99.9 {p999:7.1f}  longest {ms[-1]:7.1f} ms  ({len(ms):,} updates)")


def while_spinning(load: purge.AppLoad, cores: int, seconds: float) -> tuple[list[float], float]:
    """Run ``load`` while ``cores`` processes spin on the CPU for ``seconds``: (latencies, seconds it took)."""
    spin = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
    load.start(MAX_UPDATES, 3600)
    started = time.perf_counter()
    spinners = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(cores)]
    try:
        for spinner in spinners:
            spinner.wait(timeout=seconds + 30)
    finally:
        load.stop()
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    return load.latencies, time.perf_counter() - started


def during(backend: purge.Backend, method: str, cpu_seconds: float) -> list[str]:
    """The application's latency while ``method`` purges a fresh copy of the table, then until removed."""
    label = method if method.strip() else "reaper (defaults)"
    load = purge.AppLoad(backend, 0.001, seed=8)
    if method.startswith("cpu:"):
        return [describe(f"{label} (no purge)", *while_spinning(load, int(method.removeprefix("cpu:")), cpu_seconds))]
    fresh = purge.fresh_table(backend)
    purging = method.removeprefix("held:").strip()
    kind, flags = ("bare", []) if purging == "bare" else ("reaper", shlex.split(purging))
    load.start(MAX_UPDATES, 3600)
    try:
        with purge_held(backend, method.startswith("held:")):
            seconds, _ = run_method(backend, kind, flags, fresh.cuts)
        committed, at_commit = time.perf_counter(), len(load.latencies)
        purged_at, _ = backend.wait_purged(fresh.mark, fresh.expected) if fresh.mark is not None else (None, 0)
    finally:
        load.stop()
    lines = [describe(label, load.latencies[:at_commit], seconds)]
    if purged_at is not None:  # None on SQLite, which removes rows in the statement itself
        lines.append(describe(f"{label} then until removed", load.latencies[at_commit:], purged_at - committed))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("mariadb", "sqlite"), default="mariadb")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("methods", nargs="+",
                        help="bare, or reaper's flags ('' for its defaults); held: prefix; cpu:N spinning processes")
    parser.add_argument("--cpu-seconds", type=float, default=5.0, help="how long cpu:N spins (default 5)")
    args = parser.parse_args(argv)
    if args.database == "sqlite" and any(method.startswith("held:") for method in args.methods):
        parser.error("held: is for MariaDB (InnoDB's purge)")
    if any(method.startswith("cpu:") and not method.removeprefix("cpu:").isdigit() for method in args.methods):
        parser.error("cpu:N takes a number of processes, e.g. cpu:2")
    compileall.compile_dir(purge.REPO / "reaper", quiet=1)  # reaper runs from bytecode, as installed
    workdir = Path(f"/tmp/reaper-app-latency-{args.database}")
    workdir.mkdir(exist_ok=True)
    backend: purge.Backend = (purge.MariaDBBackend(args.rows, workdir, True, 1024, True) if args.database == "mariadb"
                              else purge.SQLiteBackend(args.rows, workdir, True))
    try:
        print(f"{backend.version()}, {args.rows:,} rows", flush=True)
        backend.build_template(purge.utc_now(), lambda table: 0.0)
        backend.rebuild()
        backend.settle()
        idle = purge.AppLoad(backend, 0.001)
        idle.run(IDLE_UPDATES, 600)
        print(describe("idle", idle.latencies), flush=True)
        for method in args.methods:
            print("\n".join(during(backend, method, args.cpu_seconds)), flush=True)
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
