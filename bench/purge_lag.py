"""Why a batched purge trails one bare DELETE on MariaDB: InnoDB's purge, in or out of the clock.

InnoDB deletes in two steps: the statement delete-marks the rows, and after the commit its purge
threads remove them from every index. A purge that commits every batch has the purge threads at
work beside it (on a 2-core machine, on the same cores); one big DELETE leaves all of that work for
after its commit, outside a clock stopped at the commit. This script runs, in rounds on freshly
rebuilt copies of ``bench/purge.py``'s table (each after the server has settled):

- ``bare``: one ``DELETE`` of every purgeable row in one transaction;
- ``reaper``: ``python -m reaper --once --yes`` with its defaults (``--reaper-flags`` adds flags);
- ``reaper-held`` / ``bare-held``: the same while another session holds a consistent snapshot
  open, which keeps InnoDB's purge from removing the deleted rows until the method is done
  (diagnosis only: never do this to a production server, whose history would pile up);

and prints, per method, the time to its last commit and the time until InnoDB had removed the
rows, with each ratio to the round's bare DELETE.
Usage: ``python bench/purge_lag.py [--rows N] [--rounds N] [--methods bare,reaper,reaper-held]``.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests"), str(HERE.parent)]

import purge  # noqa: E402  (bench/purge.py: the table, its data and the MariaDB server)


@contextlib.contextmanager
def purge_held(backend: purge.Backend, held: bool) -> Iterator[None]:
    """When ``held``, a session whose open snapshot keeps InnoDB from purging what is deleted meanwhile."""
    if not held:
        yield
        return
    assert isinstance(backend, purge.MariaDBBackend), "holding the purge is for InnoDB"
    conn = backend._connect(autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            cur.execute(f"SELECT COUNT(*) FROM {purge.TABLE} WHERE id = 1")
        yield
    finally:
        conn.rollback()
        conn.close()


def run_method(backend: purge.Backend, method: str, flags: list[str], cuts: tuple[str, str]) -> tuple[float, str]:
    """Run ``bare`` (the DELETE of the rows older than ``cuts``) or reaper with ``flags``; return its
    seconds to the last commit and a note (reaper's audit log goes beside the table's files)."""
    cut30, cut7 = cuts
    started = time.perf_counter()
    if method == "bare":
        backend.bare_delete(cut30, cut7)
        return time.perf_counter() - started, ""
    cmd = [sys.executable, "-m", "reaper", "--once", "--yes", "--json", "--database-url", backend.url(),
           "--log-level", "WARNING", *flags]
    done = subprocess.run(cmd, capture_output=True, text=True, env=purge.child_env(), stdin=subprocess.DEVNULL,
                          cwd=backend.workdir)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"reaper exited with {done.returncode}: {done.stderr[-2000:]}")
    inside = json.loads(done.stdout)["duration_seconds"]
    return seconds, f"{inside:.2f} s in the policies"


def measure(backend: purge.MariaDBBackend, method: str, flags: list[str]) -> tuple[int, float, float | None, str]:
    """(rows deleted, seconds to the last commit, seconds until InnoDB removed them, note)."""
    backend.rebuild()
    backend.settle()
    before = backend.count()
    cuts = purge.cut_offs(purge.utc_now())
    expected = backend.count(backend.purge_where(), cuts)
    mark = backend.purge_mark()
    started = time.perf_counter()
    with purge_held(backend, method.endswith("-held")):
        seconds, note = run_method(backend, method.removesuffix("-held"), flags, cuts)
    purged_at, _ = backend.wait_purged(mark, expected)
    removed = None if purged_at is None else purged_at - started
    return before - backend.count(), seconds, removed, note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--methods", default="bare,reaper,reaper-held")
    parser.add_argument("--reaper-flags", default="", help="more flags for reaper, e.g. '--batch-time 0.1'")
    args = parser.parse_args(argv)
    methods, flags = args.methods.split(","), shlex.split(args.reaper_flags)
    compileall.compile_dir(purge.REPO / "reaper", quiet=1)  # reaper runs from bytecode, as installed
    workdir = Path("/tmp/reaper-purge-lag")
    workdir.mkdir(exist_ok=True)
    backend = purge.MariaDBBackend(args.rows, workdir, True, 1024, True)
    try:
        print(f"{backend.version()}, {args.rows:,} rows, {args.rounds} rounds of {', '.join(methods)}", flush=True)
        backend.build_template(purge.utc_now(), lambda table: 0.0)
        for round_number in range(1, args.rounds + 1):
            bare: tuple[float, float | None] | None = None
            for method in methods:
                deleted, seconds, removed, note = measure(backend, method, flags)
                if method == "bare":
                    bare = (seconds, removed)
                ratio = f"{bare[0] / seconds:.2f}x" if bare else "-"
                removed_text = "not removed in time" if removed is None else f"{removed:6.2f} s"
                removed_ratio = f"{bare[1] / removed:.2f}x" if bare and bare[1] and removed else "-"
                print(f"round {round_number} {method:<12} {deleted:>10,} rows  last commit {seconds:6.2f} s "
                      f"({ratio} of bare)  removed by InnoDB {removed_text} ({removed_ratio} of bare)"
                      + (f"  [{note}]" if note else ""), flush=True)
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
