"""The gauges of a scrape, yielded from the latest snapshot: a scrape never touches the database.

Every series carries ``table``, the name of the table the daemon watches, so that reapers of several
tables on one Prometheus stay apart; the counters, kept in a registry of their own, get it here too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import chain

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from reaper.daemon.snapshot import OTHER_TYPE, STALE_STATUSES, Snapshot, kept_task_types
from reaper.inspect.stats import STATUS_ORDER, Stats


class SnapshotCollector(Collector):
    """Yields the gauges of the latest snapshot and the counters, each with the table label."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        counters: Callable[[], Iterable[Metric]],
        version: str,
        max_task_types: int,
    ) -> None:
        self.snapshot = snapshot
        self.counters = counters
        self.version = version
        self.max_task_types = max_task_types

    def collect(self) -> Iterator[Metric]:
        """Every family of a scrape: the gauges, then the counters."""
        snapshot = self.snapshot()
        for family in chain(self._gauges(snapshot), self.counters()):
            yield _with_table(family, snapshot.table)

    def _gauges(self, snapshot: Snapshot) -> Iterator[Metric]:
        yield from _task_gauges(snapshot.stats)
        yield _oldest_by_type(snapshot.stats, self.max_task_types)
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
