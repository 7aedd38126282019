"""Prometheus metrics: a registry of our own, counters updated by the jobs, gauges from a snapshot.

A scrape never touches the database: the gauges are yielded from the latest snapshot, which the
background poll replaces. Label values stay bounded: statuses are the six role names plus the
``MAX_UNKNOWN_STATUSES`` largest unknown stored ones (lower-cased), task types the ``max_task_types``
largest; the others of each are folded into ``other``. Every series carries ``table``, the name of
the table the daemon watches, so that reapers of several tables on one Prometheus stay apart.
"""

from __future__ import annotations

import collections
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from itertools import chain

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from reaper.inspect.stats import STATUS_ORDER, Stats
from reaper.policy.policies import STANDARD_POLICY_NAMES, Policy
from reaper.results import RunResult

OTHER_TYPE = "other"
OTHER_STATUS = "other"
# Stored statuses that are none of the six names, exported by name (the largest); the rest are
# added up as "other", so that a table full of junk statuses cannot multiply the series.
MAX_UNKNOWN_STATUSES = 10
STALE_STATUSES = ("running", "pending")
RUN_MODES = ("cleanup", "dry_run", "rescue", "rescue_dry_run")
RUN_OUTCOMES = ("success", "failure", "locked", "stopped")
STANDARD_ACTIONS = {"running_timeout": ("failed", "requeued"), "pending_timeout": ("failed", "requeued")}


RECENT_RUNS_KEPT = 10


def run_mode(dry_run: bool, rescue: bool) -> str:
    """The ``mode`` label of a run: a nightly ``cleanup`` or ``dry_run``, or a ``rescue`` (``rescue_dry_run``)."""
    if rescue:
        return "rescue_dry_run" if dry_run else "rescue"
    return "dry_run" if dry_run else "cleanup"


@dataclass(frozen=True)
class RunRecord:
    """One run, as the status page lists it."""

    at: float
    mode: str
    outcome: str
    matched: int = 0
    affected: int = 0
    skipped: int = 0
    duration_seconds: float = 0.0
    policies: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # name -> (matched, affected)
    origin: str = ""  # empty for this process's runs; the run's mode (scheduled, once, force) for the audit log's


@dataclass(frozen=True)
class Snapshot:
    """Everything the gauges show, replaced whole by each poll or run."""

    table: str = ""
    stats: Stats | None = None
    database_up: bool = False
    last_poll_success: float = 0.0
    poll_duration_seconds: float = 0.0
    last_cleanup_success: float = 0.0
    run_duration_seconds: Mapping[str, float] = field(default_factory=dict)
    dry_run_candidates: Mapping[str, int] = field(default_factory=dict)
    thresholds_seconds: Mapping[str, float] = field(default_factory=dict)
    type_thresholds_seconds: Mapping[tuple[str, str], float] = field(default_factory=dict)
    heartbeat_timeout_seconds: float | None = None
    recent_runs: tuple[RunRecord, ...] = ()

    def with_run(self, record: RunRecord) -> tuple[RunRecord, ...]:
        """The recent runs, newest first, with ``record`` added."""
        return ((record,) + self.recent_runs)[:RECENT_RUNS_KEPT]


def kept_task_types(counts: Mapping[tuple[str, str], int], limit: int) -> set[str]:
    """Return the ``limit`` task types with most rows; the others are shown as ``other``."""
    per_type: collections.Counter[str] = collections.Counter()
    for (_, task_type), count in counts.items():
        per_type[task_type] += count
    return set(sorted(per_type, key=lambda name: (-per_type[name], name))[:limit])


def kept_statuses(counts: Mapping[tuple[str, str], int], limit: int = MAX_UNKNOWN_STATUSES) -> set[str]:
    """Return the six status names and the ``limit`` unknown statuses with most rows; the others are ``other``."""
    per_status: collections.Counter[str] = collections.Counter()
    for (status, _), count in counts.items():
        if status not in STATUS_ORDER:
            per_status[status] += count
    return {*STATUS_ORDER, *sorted(per_status, key=lambda name: (-per_status[name], name))[:limit]}


def fold_task_types(
    counts: Mapping[tuple[str, str], int], kept: set[str], statuses: set[str] | None = None
) -> dict[tuple[str, str], int]:
    """Add up the counts of task types not in ``kept`` (and statuses not in ``statuses``) under ``other``."""
    folded: collections.Counter[tuple[str, str]] = collections.Counter()
    for (status, task_type), count in counts.items():
        shown = status if statuses is None or status in statuses else OTHER_STATUS
        folded[(shown, task_type if task_type in kept else OTHER_TYPE)] += count
    return dict(folded)


def bounded(stats: Stats, max_task_types: int) -> Stats:
    """Return ``stats`` with the statuses and task types that labels would carry folded as ``other``.

    Done once per poll, so that neither a scrape nor the status page goes through thousands of them.
    """
    counts = stats.by_status_and_type
    kept = kept_task_types(counts, max_task_types)
    stale = {}
    for status, summary in stats.stale.items():
        by_type: collections.Counter[str] = collections.Counter()
        for task_type, count in summary.by_type.items():
            by_type[task_type if task_type in kept else OTHER_TYPE] += count
        stale[status] = replace(summary, by_type=dict(by_type))
    return replace(stats, by_status_and_type=fold_task_types(counts, kept, kept_statuses(counts)), stale=stale)


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
        self.registry.register(_SnapshotCollector(self, version))

    def _initialise_labels(self) -> None:
        # Series that exist from the start let rate() and increase() see the first event.
        for name in STANDARD_POLICY_NAMES:
            for action in STANDARD_ACTIONS.get(name, ("deleted",)):
                self.reaped.labels(name, action)
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
            for rule in policy.rules:
                for task_type in rule.task_types:
                    by_type[(task_type, policy.name)] = rule.max_age.total_seconds()
                    if rule.heartbeat_max_age is not None:
                        by_type[(task_type, "heartbeat_timeout")] = rule.heartbeat_max_age.total_seconds()
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


class _SnapshotCollector(Collector):
    """Yields the gauges from the latest snapshot; never touches the database."""

    def __init__(self, metrics: ReaperMetrics, version: str) -> None:
        self.metrics = metrics
        self.version = version

    def collect(self) -> Iterator[Metric]:
        table = self.metrics.snapshot.table
        for family in chain(self._gauges(), self.metrics.counter_families()):
            yield _with_table(family, table)

    def _gauges(self) -> Iterator[Metric]:
        snapshot = self.metrics.snapshot
        yield from _task_gauges(snapshot.stats)
        yield _oldest_by_type(snapshot.stats, self.metrics.max_task_types)
        yield _gauge("reaper_database_up", "1 when the last database poll worked, else 0.", float(snapshot.database_up))
        yield _gauge(
            "reaper_last_poll_success_timestamp_seconds", "When the last statistics poll succeeded.",
            snapshot.last_poll_success,
        )
        yield _gauge(
            "reaper_poll_duration_seconds", "How long the last statistics poll took.", snapshot.poll_duration_seconds
        )
        yield _gauge(
            "reaper_last_totals_timestamp_seconds",
            "When the rows of the terminal (and unknown) statuses in reaper_tasks were last counted; 0 until then.",
            snapshot.stats.totals_at.timestamp() if snapshot.stats else 0.0,
        )
        yield _gauge(
            "reaper_last_success_timestamp_seconds",
            "When the last cleanup run (not a dry run) succeeded; 0 until then.",
            snapshot.last_cleanup_success,
        )
        yield _labelled("reaper_run_duration_seconds", "How long the last run of each mode took.", "mode",
                        snapshot.run_duration_seconds)
        yield _labelled("reaper_dry_run_candidates", "Rows the last dry run would have changed, per policy.", "policy",
                        snapshot.dry_run_candidates)
        yield _labelled("reaper_threshold_seconds", "The age threshold of each policy in force.", "policy",
                        snapshot.thresholds_seconds)
        yield _type_thresholds(snapshot.type_thresholds_seconds)
        heartbeat = GaugeMetricFamily(
            "reaper_heartbeat_timeout_seconds",
            "The default heartbeat limit of running tasks; no sample without a heartbeat column.",
        )
        if snapshot.heartbeat_timeout_seconds is not None:  # the family is always declared, so queries stay valid
            heartbeat.add_metric([], snapshot.heartbeat_timeout_seconds)
        yield heartbeat
        info = GaugeMetricFamily("reaper_build_info", "The reaper's version.", labels=["version"])
        info.add_metric([self.version], 1.0)
        yield info


def _with_table(family: Metric, table: str) -> Metric:
    """``family`` with the ``table`` label on every sample (none before a daemon names its table)."""
    if not table:
        return family
    labelled = Metric(family.name, family.documentation, family.type, family.unit)
    labelled.samples = [sample._replace(labels={**sample.labels, "table": table}) for sample in family.samples]
    return labelled


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _labelled(name: str, documentation: str, label: str, values: Mapping[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], float(value))
    return family


def _type_thresholds(values: Mapping[tuple[str, str], float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "reaper_task_type_threshold_seconds",
        "Thresholds of task types that have their own ([task_types.NAME]); the others use reaper_threshold_seconds.",
        labels=["task_type", "threshold"],
    )
    for (task_type, threshold), value in sorted(values.items()):
        family.add_metric([task_type, threshold], value)
    return family


def _task_gauges(stats: Stats | None) -> Iterator[GaugeMetricFamily]:
    """The gauges of ``stats``, whose statuses and task types ``bounded`` has already folded."""
    tasks = GaugeMetricFamily("reaper_tasks", "Rows per status and task type.", labels=["status", "task_type"])
    stale = GaugeMetricFamily(
        "reaper_stale_tasks", "Zombie rows (running or pending past their threshold) per task type.",
        labels=["status", "task_type"],
    )
    oldest = GaugeMetricFamily(
        "reaper_oldest_task_age_seconds", "Age of the oldest running and pending task; 0 when there is none.",
        labels=["status"],
    )
    counts = stats.by_status_and_type if stats else {}
    types = sorted({task_type for _, task_type in counts}) or ["unknown"]
    statuses = list(STATUS_ORDER) + sorted({status for status, _ in counts} - set(STATUS_ORDER))
    for status in statuses:
        for task_type in types:
            tasks.add_metric([status, task_type], float(counts.get((status, task_type), 0)))
    for status in STALE_STATUSES:
        summary = stats.stale.get(status) if stats else None
        by_type = summary.by_type if summary else {}
        for task_type in types:
            stale.add_metric([status, task_type], float(by_type.get(task_type, 0)))
        age = summary.oldest_age_seconds if summary and summary.oldest_age_seconds is not None else 0.0
        oldest.add_metric([status], age)
    yield tasks
    yield stale
    yield oldest


def _oldest_by_type(stats: Stats | None, max_task_types: int) -> GaugeMetricFamily:
    """The age of the oldest running and pending task of each task type that has one (``other``: the oldest)."""
    family = GaugeMetricFamily(
        "reaper_task_type_oldest_age_seconds",
        "Age of the oldest running and pending task per task type, dated as its policy dates it; "
        "no sample for a type without such a task.",
        labels=["status", "task_type"],
    )
    if stats is None:
        return family
    kept = kept_task_types(stats.by_status_and_type, max_task_types)
    for status in STALE_STATUSES:
        summary = stats.stale.get(status)
        ages: dict[str, float] = defaultdict(float)
        for task_type, age in (summary.oldest_by_type if summary else {}).items():
            folded = task_type if task_type in kept else OTHER_TYPE
            ages[folded] = max(ages[folded], age)
        for task_type, age in sorted(ages.items()):
            family.add_metric([status, task_type], age)
    return family
