"""Prometheus metrics: a registry of our own, counters updated by the jobs, gauges from a snapshot.

A scrape never touches the database: the gauges are yielded from the latest snapshot (``snapshot``),
which the background poll and each run replace, by a collector of their own (``gauges``). Label
values stay bounded (see ``snapshot.bounded``); every series carries ``table``, the name of the table
the daemon watches.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import replace

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import Metric

from reaper.daemon.gauges import SnapshotCollector
from reaper.daemon.snapshot import RECENT_RUNS_KEPT, RunRecord, Snapshot, bounded
from reaper.inspect.stats import Stats
from reaper.policy.catalog import STANDARD_SPECS, spec_named
from reaper.policy.policies import Policy
from reaper.results import RunResult

RUN_MODES = ("cleanup", "dry_run", "rescue", "rescue_dry_run")
RUN_OUTCOMES = ("success", "failure", "locked", "stopped")


def run_mode(dry_run: bool, rescue: bool) -> str:
    """The ``mode`` label of a run: a nightly ``cleanup`` or ``dry_run``, or a ``rescue`` (``rescue_dry_run``)."""
    if rescue:
        return "rescue_dry_run" if dry_run else "rescue"
    return "dry_run" if dry_run else "cleanup"


class ReaperMetrics:
    """The daemon's metrics: counters it increments, and the snapshot its gauges come from."""

    def __init__(self, registry: CollectorRegistry, version: str, max_task_types: int = 50) -> None:
        self.registry = registry
        self.max_task_types = max_task_types
        self._lock = threading.Lock()
        self._snapshot = Snapshot()
        # The counters live in a registry of our own, which the collector below exports with the table label.
        registry = self._counters = CollectorRegistry()
        self.reaped = Counter(
            "reaper_reaped_tasks",
            "Rows the reaper set to failure, requeued or deleted.",
            ["policy", "action"],
            registry=registry,
        )
        self.skipped = Counter(
            "reaper_skipped_tasks", "Rows a cleanup could not write (locked, or refused by a constraint).",
            ["policy", "reason"], registry=registry,
        )
        self.runs = Counter("reaper_runs", "Policy runs by mode and outcome.", ["mode", "outcome"], registry=registry)
        self.job_failures = Counter(
            "reaper_job_failures",
            "Scheduled jobs that raised, by scheduled job and error kind.",
            # Not "job": Prometheus's own target label would override it (exported_job).
            ["scheduled_job", "kind"],
            registry=registry,
        )
        self.jobs_skipped = Counter(
            "reaper_jobs_skipped", "Scheduled jobs skipped because the previous one was still running.",
            ["scheduled_job"], registry=registry,
        )
        self.database_errors = Counter(
            "reaper_database_errors", "Database errors seen by polls and runs, by kind.", ["kind"], registry=registry
        )
        self.reloads = Counter(
            "reaper_config_reloads", "Configuration reloads by outcome.", ["outcome"], registry=registry
        )
        self.throttled = Counter(
            "reaper_throttled_seconds",
            "Seconds cleanups paused for the server's load or a replica's lag, by reason (a load NAME, "
            "replica_lag, replica_unavailable).",
            ["reason"],
            registry=registry,
        )
        self._initialise_labels()
        self.registry.register(SnapshotCollector(lambda: self.snapshot, self.counter_families, version, max_task_types))

    def _initialise_labels(self) -> None:
        # Series that exist from the start let rate() and increase() see the first event.
        for spec in STANDARD_SPECS:
            for action in spec.actions:
                self.reaped.labels(spec.name, action.done)
        for mode in RUN_MODES:
            for outcome in RUN_OUTCOMES:
                self.runs.labels(mode, outcome)
        for outcome in ("success", "failure"):
            self.reloads.labels(outcome)

    def _counter_metrics(self) -> tuple[Counter, ...]:
        return (self.reaped, self.skipped, self.runs, self.job_failures, self.jobs_skipped, self.database_errors,
                self.reloads)

    def counter_families(self) -> Iterable[Metric]:
        """The counters' families, as their own registry collects them (without the table label)."""
        return self._counters.collect()

    def set_table(self, table: str) -> None:
        """Name the table the series describe; another table starts afresh (its counters from zero)."""
        with self._lock:
            if table == self._snapshot.table:
                return
            first = not self._snapshot.table
            self._snapshot = Snapshot(table=table, recent_runs=self._snapshot.recent_runs)
        if not first:  # the counts so far belong to the table watched until now
            for counter in self._counter_metrics():
                counter.clear()
            self._initialise_labels()

    @property
    def snapshot(self) -> Snapshot:
        """The latest snapshot."""
        with self._lock:
            return self._snapshot

    def _update(self, **changes: object) -> None:
        with self._lock:
            # The callers pass Snapshot's own field names and types; replace() checks the names at run time.
            self._snapshot = replace(self._snapshot, **changes)  # type: ignore[arg-type]  # see above

    def set_thresholds(self, policies: Iterable[Policy]) -> None:
        """Show the thresholds in force: the defaults, and those of task types with their own."""
        policies = list(policies)
        by_type: dict[tuple[str, str], float] = {}
        for policy in policies:
            spec = spec_named(policy.name)
            beat = spec.heartbeat.label if spec and spec.heartbeat else None  # the heartbeat limit's own label
            for rule in policy.rules:
                for task_type in rule.task_types:
                    by_type[(task_type, policy.name)] = rule.max_age.total_seconds()
                    if rule.heartbeat_max_age is not None and beat is not None:
                        by_type[(task_type, beat)] = rule.heartbeat_max_age.total_seconds()
        heartbeat = next((p.default.heartbeat_max_age for p in policies if p.default.heartbeat_max_age), None)
        self._update(
            thresholds_seconds={p.name: p.max_age.total_seconds() for p in policies},
            type_thresholds_seconds=by_type,
            heartbeat_timeout_seconds=heartbeat.total_seconds() if heartbeat else None,
        )

    def poll_succeeded(self, stats: Stats, at: float, duration: float) -> None:
        """Record a successful statistics poll."""
        shown = bounded(stats, self.max_task_types)
        self._update(stats=shown, database_up=True, last_poll_success=at, poll_duration_seconds=duration)

    def poll_failed(self, category: str, duration: float) -> None:
        """Record a failed poll: the database is down (or refused us); the last numbers stay."""
        self.database_errors.labels(category).inc()
        self._update(database_up=False, poll_duration_seconds=duration)

    def run_finished(self, run: RunResult, at: float, rescue: bool = False) -> None:
        """Record a finished policy run (cleanup, dry run, or a rescue of either kind)."""
        mode = run_mode(run.dry_run, rescue)
        outcome = "stopped" if run.stopped_early else "success"
        self.runs.labels(mode, outcome).inc()
        durations = {**self.snapshot.run_duration_seconds, mode: run.duration_seconds}
        record = RunRecord(
            at, mode, outcome, run.matched, run.affected, run.skipped, run.duration_seconds,
            {name: (result.matched, result.affected) for name, result in run.policies.items()},
        )
        # A rescue that found nothing (every few minutes) would push the nightly runs off the status page.
        recent = self.snapshot.with_run(record) if run.matched or not rescue else self.snapshot.recent_runs
        if run.dry_run:  # a rescue's dry run has the timeouts only: the other policies keep their last numbers
            candidates = {**self.snapshot.dry_run_candidates, **{n: r.matched for n, r in run.policies.items()}}
            self._update(run_duration_seconds=durations, dry_run_candidates=candidates, recent_runs=recent)
            return
        for reason, seconds in run.throttle.items():
            self.throttled.labels(reason).inc(seconds)
        for name, result in run.policies.items():
            for done, count in result.done.items():
                self.reaped.labels(name, done).inc(count)
            for reason, count in result.skip_reasons.items():
                self.skipped.labels(name, "lock" if reason == "lock conflict" else "constraint").inc(count)
        changes: dict[str, object] = {"run_duration_seconds": durations, "recent_runs": recent}
        if not run.stopped_early and mode == "cleanup":  # a rescue runs the timeouts only, not the whole cleanup
            changes["last_cleanup_success"] = at
        self._update(**changes)

    def restore_runs(self, runs: Iterable[RunRecord]) -> None:
        """Start the recent runs from those of earlier processes (newest first), for the status page only."""
        self._update(recent_runs=tuple(runs)[:RECENT_RUNS_KEPT])

    def run_failed(self, dry_run: bool, outcome: str, at: float, rescue: bool = False) -> None:
        """Record a run that failed or found the lock taken."""
        mode = run_mode(dry_run, rescue)
        self.runs.labels(mode, outcome).inc()
        self._update(recent_runs=self.snapshot.with_run(RunRecord(at, mode, outcome)))
