"""What the gauges and the status page show: a snapshot, replaced whole by each poll or run.

Label values stay bounded: statuses are the six role names plus the ``MAX_UNKNOWN_STATUSES`` largest
unknown stored ones (lower-cased), task types the ``max_task_types`` largest; the others of each are
folded into ``other``, once per poll (``bounded``), so that neither a scrape nor the status page goes
through thousands of them.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from reaper.inspect.stats import STATUS_ORDER, Stats
from reaper.policy.catalog import zombie_specs

OTHER_TYPE = "other"
OTHER_STATUS = "other"
# Stored statuses that are none of the six names, exported by name (the largest); the rest are
# added up as "other", so that a table full of junk statuses cannot multiply the series.
MAX_UNKNOWN_STATUSES = 10
# The status of each policy that finds zombies -> its name: their rows are the stale ones.
ZOMBIE_POLICIES = {spec.status: spec.name for spec in zombie_specs()}
STALE_STATUSES = tuple(ZOMBIE_POLICIES)
RECENT_RUNS_KEPT = 10


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
