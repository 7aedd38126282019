"""An application's single-row updates while a purge runs: which purge settings keep its latency low.

``bench/purge.py`` measures the application's p50/p99 during reaper's default purge; this script
compares, in one run on freshly rebuilt copies of the same table, the application's latency
while nothing else runs, during the bare DELETE, and during reaper with each given set of flags,
so that the cost of a purge setting (``--sleep``, ``--batch-time``) on the application is measured
side by side. The application is ``purge.AppLoad``: single-row ``UPDATE``s of recent rows, each its
own transaction, 1 ms apart. A method prefixed with ``held:`` runs (MariaDB only) while another
session holds a consistent snapshot open, which keeps InnoDB's purge from removing the deleted rows
meanwhile (diagnosis only: it shows what InnoDB's purge adds to the application's latency).

Usage: ``python bench/app_latency.py --database mariadb --rows 1000000 bare "" "--sleep 0.05" held:``
("" is reaper with its defaults).
"""

from __future__ import annotations

import argparse
import compileall
import shlex
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests"), str(HERE.parent)]

import purge  # noqa: E402  (bench/purge.py: the table, its data, the servers and the application load)
from purge_lag import purge_held, run_method  # noqa: E402

IDLE_UPDATES = 3000
MAX_UPDATES = 500_000


def describe(label: str, latencies: list[float], seconds: float | None = None) -> str:
    """One line: p50, p99, p99.9 and the longest update, and how many updates were made."""
    ms = sorted(value * 1000 for value in latencies)
    p999 = ms[min(len(ms) - 1, int(len(ms) * 0.999))]
    took = f"{seconds:7.2f} s " if seconds is not None else " " * 10
    return (f"{label:<36} {took} p50 {purge.percentile(ms, 0.5):6.2f}  p99 {purge.percentile(ms, 0.99):7.2f}  "
            f"p99.9 {p999:7.1f}  longest {ms[-1]:7.1f} ms  ({len(ms):,} updates)")


def during(backend: purge.Backend, method: str) -> str:
    """The application's latency while ``method`` purges a fresh copy of the table."""
    backend.rebuild()
    backend.settle()
    purging = method.removeprefix("held:").strip()
    kind, flags = ("bare", []) if purging == "bare" else ("reaper", shlex.split(purging))
    load = purge.AppLoad(backend, 0.001, seed=8)
    with purge_held(backend, method.startswith("held:")):
        load.start(MAX_UPDATES, 3600)
        try:
            seconds, _ = run_method(backend, kind, flags, purge.cut_offs(purge.utc_now()))
        finally:
            load.stop()
    return describe(method if method.strip() else "reaper (defaults)", load.latencies, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("mariadb", "sqlite"), default="mariadb")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("methods", nargs="+", help="bare, or reaper's flags ('' for its defaults); held: prefix")
    args = parser.parse_args(argv)
    if args.database == "sqlite" and any(method.startswith("held:") for method in args.methods):
        parser.error("held: is for MariaDB (InnoDB's purge)")
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
            print(during(backend, method), flush=True)
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
