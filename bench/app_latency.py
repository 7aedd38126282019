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

``throttle`` (MariaDB only, optionally followed by more flags: ``"throttle --batch-time 0.1"``) is
reaper with ``--max-load history_list_length=N``: it pauses while InnoDB's purge backlog is above N,
N being ``--history-factor`` (2) times the highest history list length seen while the application ran
alone (at least ``HISTORY_FLOOR``); ``throttle@F`` uses the factor F instead, so that one run can
draw the curve of several limits (``throttle@1 throttle@2 throttle@4``). A CURVE table ends the run:
each purge's p99 against idle and its rate against reaper with its defaults. When reaper with its
defaults ("") ran too, a GOAL line compares each throttled run with it: the application's p99 at
most 2x idle, at least half the unthrottled purge rate counted until InnoDB has removed the rows.

On MariaDB the application goes on after a purge's last commit until InnoDB's purge threads have
removed the deleted rows, and that stretch is reported on its own line (``... then until removed``):
one big DELETE leaves all of that work for after its commit.

Usage: ``python bench/app_latency.py --database mariadb --rows 1000000 bare "" "--sleep 0.5" "--sleep 1" throttle``
("" is reaper with its defaults).
"""

from __future__ import annotations

import argparse
import compileall
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests"), str(HERE.parent)]

import purge  # noqa: E402  (bench/purge.py: the table, its data, the servers and the application load)
import steal  # noqa: E402
from purge_lag import purge_held, run_method  # noqa: E402  (after the sys.path line above)

# The application's idle tail on a shared 2-core machine moves between 1 and 7 ms from one 3-second
# stretch to the next with nothing else running: a sample of 20,000 updates (about 25 s) is steady to 5 %.
IDLE_UPDATES = 20_000
MAX_UPDATES = 500_000
HISTORY_POLL_SECONDS = 0.1
HISTORY_FLOOR = 20  # an idle history near 0 would make any one transaction pause the purge
GOAL_P99_OVER_IDLE = 2.0
GOAL_RATE_OF_UNTHROTTLED = 0.5


@dataclass
class Outcome:
    """What one purge did: the application's p99 over the whole purge (until removed), and its rate."""

    label: str
    p99_ms: float
    rate_removed: float | None


class HistorySampler:
    """InnoDB's history list length, read every ``HISTORY_POLL_SECONDS`` in a thread of its own."""

    def __init__(self, backend: purge.MariaDBBackend) -> None:
        self.backend = backend
        self.values: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        with self.backend.server._admin() as conn, conn.cursor() as cur:
            while not self._stop.is_set():
                self.values.append(self.backend._metrics(cur)["trx_rseg_history_len"])
                self._stop.wait(HISTORY_POLL_SECONDS)

    def __enter__(self) -> HistorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def history_limit(idle_values: list[int], factor: float) -> int:
    """The N of ``--max-load history_list_length=N``: ``factor`` times the idle peak, at least ``HISTORY_FLOOR``."""
    return max(int(factor * max(idle_values, default=0)), HISTORY_FLOOR)


def is_throttle(word: str) -> bool:
    """Whether a method's first word is ``throttle`` or ``throttle@F``."""
    return word == "throttle" or word.startswith("throttle@")


def reaper_flags(method: str, idle: IdleHistory | None, factor: float) -> tuple[str, list[str]]:
    """The label and reaper's flags of a method: its own flags, or for ``throttle`` (``throttle@F``: F
    times the idle peak instead of ``--history-factor``) the history limit first."""
    words = shlex.split(method)
    if not is_throttle(words[0] if words else ""):
        return method if method.strip() else "reaper (defaults)", words
    assert idle is not None, "throttle needs the idle history level (MariaDB)"
    own_factor = words[0].partition("@")[2]
    limit = history_limit([idle.peak], float(own_factor) if own_factor else factor)
    rest = " ".join(words[1:])
    return (f"throttle N={limit}{' ' + rest if rest else ''}",
            ["--max-load", f"history_list_length={limit}", *words[1:]])


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


def during(backend: purge.Backend, method: str, args: argparse.Namespace,
           idle: IdleHistory | None = None) -> tuple[list[str], Outcome | None]:
    """The application's latency while ``method`` purges a fresh copy of the table, then until removed."""
    load = purge.AppLoad(backend, 0.001, seed=8)
    if method.startswith("cpu:"):
        spun = while_spinning(load, int(method.removeprefix("cpu:")), args.cpu_seconds)
        return [describe(f"{method} (no purge)", *spun)], None
    fresh = purge.fresh_table(backend)
    purging = method.removeprefix("held:").strip()
    label, flags = reaper_flags(purging, idle, args.history_factor)
    label = f"held:{label}" if method.startswith("held:") else label
    kind = "bare" if purging == "bare" else "reaper"
    meter = steal.StealMeter()
    load.start(MAX_UPDATES, 3600)
    try:
        with purge_held(backend, method.startswith("held:")):
            seconds, _ = run_method(backend, kind, flags, fresh.cuts)
        committed, at_commit = time.perf_counter(), len(load.latencies)
        purged_at, _ = backend.wait_purged(fresh.mark, fresh.expected) if fresh.mark is not None else (None, 0)
    finally:
        load.stop()
    lines = [describe(label, load.latencies[:at_commit], seconds)]
    removed = seconds if fresh.mark is None else None  # SQLite removes the rows in the statement itself
    if purged_at is not None:
        lines.append(describe(f"{label} then until removed", load.latencies[at_commit:], purged_at - committed))
        removed = seconds + purged_at - committed
    rate_removed = fresh.expected / removed if removed else None
    lines.append(f"  {fresh.expected:,} rows: {fresh.expected / seconds:,.0f} rows/s to the last commit, "
                 + (f"{rate_removed:,.0f} rows/s until removed" if rate_removed else "not removed in time")
                 + steal.beside(meter.share()))
    ms = sorted(value * 1000 for value in load.latencies)
    return lines, Outcome(label, purge.percentile(ms, 0.99) if ms else float("inf"), rate_removed)


def unthrottled(outcomes: list[Outcome]) -> Outcome | None:
    """Reaper with its defaults, what every other purge is held against."""
    return next((o for o in outcomes if o.label == "reaper (defaults)"), None)


def goal_lines(idle_p99_ms: float, outcomes: list[Outcome]) -> list[str]:
    """For each throttled purge, whether it kept the application's p99 within 2x idle at half the
    unthrottled rate (until removed), beside reaper with its defaults."""
    defaults = unthrottled(outcomes)
    lines = []
    for outcome in outcomes:
        if not outcome.label.startswith("throttle") or defaults is None:
            continue
        p99_ok = outcome.p99_ms <= GOAL_P99_OVER_IDLE * idle_p99_ms
        share = (outcome.rate_removed / defaults.rate_removed
                 if outcome.rate_removed and defaults.rate_removed else 0.0)
        met = "met" if p99_ok and share >= GOAL_RATE_OF_UNTHROTTLED else "MISSED"
        lines.append(f"GOAL {outcome.label}: p99 {outcome.p99_ms:.2f} ms against {GOAL_P99_OVER_IDLE:g}x idle "
                     f"({GOAL_P99_OVER_IDLE * idle_p99_ms:.2f} ms), {share:.2f}x of the unthrottled rate until "
                     f"removed (>= {GOAL_RATE_OF_UNTHROTTLED:g}x): {met}")
    return lines


def curve_lines(idle_p99_ms: float, outcomes: list[Outcome]) -> list[str]:
    """The curve: for each purge, the application's p99 against idle and the purge's rate against
    reaper with its defaults (until removed), one line each, in the order given."""
    defaults = unthrottled(outcomes)
    base = defaults.rate_removed if defaults else None
    lines = [f"{'CURVE setting':<36} {'p99 ms':>8} {'x idle':>7} {'rows/s':>9} {'x defaults':>10}"]
    for outcome in outcomes:
        rate = f"{outcome.rate_removed:9,.0f}" if outcome.rate_removed else f"{'-':>9}"
        share = (f"{outcome.rate_removed / base:10.2f}" if outcome.rate_removed and base
                 else f"{'-':>10}")
        lines.append(f"{outcome.label:<36} {outcome.p99_ms:8.2f} {outcome.p99_ms / idle_p99_ms:7.2f} {rate} {share}")
    return lines


@dataclass
class IdleHistory:
    """InnoDB's history list length while the application ran alone, and the throttle's N from it."""

    peak: int
    n: int


def alone(backend: purge.Backend, label: str, updates: int) -> purge.AppLoad:
    """The application with nothing else running; prints its line, and the host's steal meanwhile."""
    idle = purge.AppLoad(backend, 0.001)
    meter = steal.StealMeter()
    idle.run(updates, 600)
    print(describe(label, idle.latencies) + steal.beside(meter.share()), flush=True)
    return idle


def idle_run(backend: purge.Backend, factor: float, updates: int) -> tuple[purge.AppLoad, IdleHistory | None]:
    """The application alone; on MariaDB, its history list length meanwhile."""
    if not isinstance(backend, purge.MariaDBBackend):
        return alone(backend, "idle", updates), None
    with HistorySampler(backend) as sampler:
        idle = alone(backend, "idle", updates)
    return idle, IdleHistory(max(sampler.values, default=0), history_limit(sampler.values, factor))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("mariadb", "sqlite"), default="mariadb")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("methods", nargs="+",
                        help="bare, or reaper's flags ('' for its defaults); held: prefix; cpu:N spinning processes")
    parser.add_argument("--cpu-seconds", type=float, default=5.0, help="how long cpu:N spins (default 5)")
    parser.add_argument("--idle-updates", type=int, default=IDLE_UPDATES,
                        help=f"the application's updates alone, before the purges and again after them "
                        f"(default {IDLE_UPDATES:,})")
    parser.add_argument("--history-factor", type=float, default=2.0,
                        help="throttle: N is this times the idle peak of history_list_length (default 2)")
    args = parser.parse_args(argv)
    innodb_only = [method for method in args.methods
                   if method.startswith("held:") or is_throttle((shlex.split(method) or [""])[0])]
    if args.database == "sqlite" and innodb_only:
        parser.error("held: and throttle are for MariaDB (InnoDB's purge)")
    if any(method.startswith("cpu:") and not method.removeprefix("cpu:").isdigit() for method in args.methods):
        parser.error("cpu:N takes a number of processes, e.g. cpu:2")
    compileall.compile_dir(purge.REPO / "reaper", quiet=1)  # reaper runs from bytecode, as installed
    # a folder of its own: two runs at once (two test suites) must not share a SQLite file
    workdir = Path(tempfile.mkdtemp(prefix=f"reaper-app-latency-{args.database}-"))
    backend: purge.Backend = (purge.MariaDBBackend(args.rows, workdir, True, 1024, True) if args.database == "mariadb"
                              else purge.SQLiteBackend(args.rows, workdir, True))
    try:
        print(f"{backend.version()}, {args.rows:,} rows", flush=True)
        backend.build_template(purge.utc_now(), lambda table: 0.0)
        backend.rebuild()
        backend.settle()
        idle, limit = idle_run(backend, args.history_factor, args.idle_updates)
        if limit is not None:
            print(f"  history_list_length while the application ran alone: up to {limit.peak:,}; "
                  f"throttle N = {limit.n:,}", flush=True)
        outcomes = []
        for method in args.methods:
            lines, outcome = during(backend, method, args, limit)
            print("\n".join(lines), flush=True)
            outcomes += [outcome] if outcome else []
        again = alone(backend, "idle, again", args.idle_updates)
        idle_p99s = [purge.percentile(sorted(value * 1000 for value in load.latencies), 0.99)
                     for load in (idle, again) if load.latencies]
        if idle_p99s:
            idle_p99 = min(idle_p99s)  # the stricter of the two: the goal must hold against either
            print(f"idle p99: {idle_p99:.2f} ms, the lower of the two", flush=True)
            print("\n".join(curve_lines(idle_p99, outcomes) + goal_lines(idle_p99, outcomes)), flush=True)
    finally:
        backend.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
