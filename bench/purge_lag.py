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
rows, with each ratio to the round's bare DELETE, and the CPU time the server (``mariadbd``, all
its threads) and reaper's process spent over each: on a machine whose cores are all busy, work that
InnoDB's purge does during the run is time taken from the deletes.
Usage: ``python bench/purge_lag.py [--rows N] [--rounds N] [--methods bare,reaper,reaper-held]``.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import tempfile
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
    done = subprocess.run(purge.reaper_command(backend.url(), flags), capture_output=True, text=True,
                          env=purge.child_env(), stdin=subprocess.DEVNULL, cwd=backend.workdir)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"reaper exited with {done.returncode}: {done.stderr[-2000:]}")
    inside = json.loads(done.stdout)["duration_seconds"]
    return seconds, f"{inside:.2f} s in the policies"


@dataclasses.dataclass
class Measured:
    """One method's run: rows, seconds, and CPU seconds to the last commit and until the rows were removed."""

    deleted: int
    seconds: float
    removed: float | None
    server_cpu: float
    server_cpu_removed: float
    client_cpu: float
    note: str

    def cpu_text(self) -> str:
        """The CPU figures, with the share of the machine's cores they kept busy."""
        busy = purge.cores_busy(self.server_cpu + self.client_cpu, self.seconds)
        text = (f"cpu to the commit: server {self.server_cpu:.2f} s + reaper {self.client_cpu:.2f} s "
                f"({busy:.0%} of {os.cpu_count() or 1} cores)")
        if self.removed:
            text += f"; server until removed {self.server_cpu_removed:.2f} s"
        return text


def measure(backend: purge.MariaDBBackend, method: str, flags: list[str]) -> Measured:
    """Run ``method`` on a rebuilt, settled table and time it to its last commit and until InnoDB removed the rows."""
    fresh = purge.fresh_table(backend)
    before = backend.count()
    cpu_before, children_before = backend.server_cpu_seconds(), purge.children_cpu_seconds()
    started = time.perf_counter()
    with purge_held(backend, method.endswith("-held")):
        seconds, note = run_method(backend, method.removesuffix("-held"), flags, fresh.cuts)
        cpu_at_commit, client_cpu = backend.server_cpu_seconds(), purge.children_cpu_seconds() - children_before
    purged_at, _ = backend.wait_purged(fresh.mark, fresh.expected)
    cpu_at_removed = backend.server_cpu_seconds()  # a few polls late: at most POLL_SECONDS of idle server
    removed = None if purged_at is None else purged_at - started
    return Measured(before - backend.count(), seconds, removed, cpu_at_commit - cpu_before,
                    cpu_at_removed - cpu_before, client_cpu, note)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--methods", default="bare,reaper,reaper-held")
    parser.add_argument("--reaper-flags", default="", help="more flags for reaper, e.g. '--batch-time 0.1'")
    args = parser.parse_args(argv)
    methods, flags = args.methods.split(","), shlex.split(args.reaper_flags)
    compileall.compile_dir(purge.REPO / "reaper", quiet=1)  # reaper runs from bytecode, as installed
    # removed at the end (and at exit, should the start fail): a run leaves nothing in /tmp
    scratch = tempfile.TemporaryDirectory(prefix="reaper-purge-lag-")
    workdir = Path(scratch.name)
    backend = purge.MariaDBBackend(args.rows, workdir, True, 1024, True)
    try:
        print(f"{backend.version()}, {args.rows:,} rows, {args.rounds} rounds of {', '.join(methods)}", flush=True)
        print(f"working files in {workdir}, removed at the end", flush=True)
        backend.build_template(purge.utc_now(), lambda table: 0.0)
        for round_number in range(1, args.rounds + 1):
            bare: tuple[float, float | None] | None = None
            for method in methods:
                run = measure(backend, method, flags)
                if method == "bare":
                    bare = (run.seconds, run.removed)
                ratio = f"{bare[0] / run.seconds:.2f}x" if bare else "-"
                removed_text = "not removed in time" if run.removed is None else f"{run.removed:6.2f} s"
                removed_ratio = f"{bare[1] / run.removed:.2f}x" if bare and bare[1] and run.removed else "-"
                print(f"round {round_number} {method:<12} {run.deleted:>10,} rows  last commit {run.seconds:6.2f} s "
                      f"({ratio} of bare)  removed by InnoDB {removed_text} ({removed_ratio} of bare)"
                      + (f"  [{run.note}]" if run.note else "") + f"\n  {run.cpu_text()}", flush=True)
    finally:
        backend.close()
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
