"""Statistics of the task table: the human report, and the snapshot behind the metrics.

Status keys are role names (``pending``, ``running``, ...) whatever the table stores, so that
dashboards and alerts keep working across vocabularies; a stored status that matches no role is
reported lower-cased. Rows without a task type are counted under ``unknown``.

The daemon refreshes cheaply (``poll_stats``): every poll counts the active statuses (pending,
running, retry: a range of the status index) and the zombies exactly, and recounts every other
row (the terminal statuses, millions of rows) only when its last count is older than a given age,
reusing it in between. ``collect_stats`` (``--stats-only``) counts everything, every time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, and_, case, func, literal, not_, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from reaper.database.table import ACTIVE_STATUSES, TaskTable
from reaper.engine.counting import sample_ids
from reaper.policy.matching import dated_before, datings, type_scope
from reaper.policy.policies import Action, Policy, Rule

STATUS_ORDER = ("pending", "running", "success", "failure", "retry", "revoked")
UNKNOWN_TYPE = "unknown"
RECENT_WINDOW = timedelta(hours=24)
ZOMBIE_SAMPLE_SIZE = 5


@dataclass
class StaleSummary:
    """Zombies of one status: how many, per task type, the thresholds, and the oldest age seen.

    ``threshold`` is the default rule's; ``thresholds_by_type`` holds the task types with their own.
    ``oldest_by_type`` holds the oldest age of each task type that has a row of this status.
    ``sample_ids`` are the smallest zombie ids (at most ``ZOMBIE_SAMPLE_SIZE``), for ``reaper --explain``.
    """

    threshold: str
    thresholds_by_type: dict[str, str] = field(default_factory=dict)
    count: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    oldest_age_seconds: float | None = None
    oldest_by_type: dict[str, float] = field(default_factory=dict)
    sample_ids: list[Any] = field(default_factory=list)
    threshold_seconds: float | None = None  # of the default rule
    thresholds_seconds_by_type: dict[str, float] = field(default_factory=dict)
    heartbeat_threshold_seconds: float | None = None  # of the default rule, when it judges by heartbeat


@dataclass
class Stats:
    """One consistent look at the table."""

    now: datetime
    table: str
    by_status_and_type: dict[tuple[str, str], int]
    created_last_24h: int
    stale: dict[str, StaleSummary]
    totals_at: datetime  # when the rows of the statuses that are not active were counted (``now`` if just now)

    @property
    def total(self) -> int:
        """All rows."""
        return sum(self.by_status_and_type.values())

    @property
    def by_status(self) -> dict[str, int]:
        """Rows per status role; every role is present, with 0 when none."""
        counts: dict[str, int] = dict.fromkeys(STATUS_ORDER, 0)
        for (status, _), count in self.by_status_and_type.items():
            counts[status] = counts.get(status, 0) + count
        return counts

    @property
    def by_type(self) -> dict[str, int]:
        """Rows per task type, largest first."""
        counts: dict[str, int] = defaultdict(int)
        for (_, task_type), count in self.by_status_and_type.items():
            counts[task_type] += count
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form used by ``--stats-only --json``."""
        return {
            "table": self.table,
            "now": self.now.isoformat(),
            "total": self.total,
            "by_status": self.by_status,
            "by_type": self.by_type,
            "created_last_24h": self.created_last_24h,
            "stale": {status: summary.count for status, summary in self.stale.items()},
            "stale_by_type": {status: summary.by_type for status, summary in self.stale.items()},
            "oldest_age_seconds": {status: summary.oldest_age_seconds for status, summary in self.stale.items()},
            "thresholds": {status: summary.threshold for status, summary in self.stale.items()},
            "threshold_seconds": {status: summary.threshold_seconds for status, summary in self.stale.items()},
            "heartbeat_threshold_seconds": {
                status: summary.heartbeat_threshold_seconds for status, summary in self.stale.items()
            },
            "thresholds_by_type": {status: summary.thresholds_by_type for status, summary in self.stale.items()},
            "threshold_seconds_by_type": {
                status: summary.thresholds_seconds_by_type for status, summary in self.stale.items()
            },
        }


def _type_key(value: Any) -> str:
    return UNKNOWN_TYPE if value is None or value == "" else str(value)


def _task_type(table: TaskTable) -> Any:
    column = table.column("task_type")
    return column if column is not None else literal(None).label("task_type")


@dataclass(frozen=True)
class Totals:
    """The rows whose status is not an active one (terminal, unknown, null), by status and type, and when."""

    counts: Mapping[tuple[str, str], int]
    at: datetime


def _is_active(table: TaskTable) -> ColumnElement[bool]:
    return table.status.in_([value for role in ACTIVE_STATUSES for value in table.status_values(role)])


def _counts(
    conn: Connection, table: TaskTable, where: ColumnElement[bool] | None = None
) -> dict[tuple[str, str], int]:
    task_type = _task_type(table)
    query = select(table.status, task_type, func.count()).group_by(table.status, task_type)
    if where is not None:
        query = query.where(where)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for status, stored_type, count in conn.execute(query):
        counts[(table.role_of(status), _type_key(stored_type))] += int(count)
    return dict(counts)


def _active_counts(conn: Connection, table: TaskTable) -> dict[tuple[str, str], int]:
    """Count the active statuses per task type: a range of the status index, however large the table."""
    return _counts(conn, table, _is_active(table))


def _other_counts(conn: Connection, table: TaskTable, now: datetime) -> Totals:
    """Count every row whose status is not active (a full scan): exactly the complement of ``_active_counts``."""
    return Totals(_counts(conn, table, or_(not_(_is_active(table)), table.status.is_(None))), now)


def _created_since(conn: Connection, table: TaskTable, since: datetime) -> int:
    query = select(func.count()).select_from(table.table).where(table.since(table.columns["created_at"], since))
    return int(conn.execute(query).scalar_one())


def _stale_rule(conn: Connection, table: TaskTable, policy: Policy, rule: Rule, now: datetime) -> list[Any]:
    """Return (task type, zombies, oldest dating moment) per task type for one rule of ``policy``.

    The oldest moment is taken per age column, among the rows that column dates, and converted with
    that column's own type: a heartbeat stored with its zone and start times stored naive in the
    database's zone cannot be compared inside one MIN().
    """
    dates = datings(table, policy, rule, now)
    is_stale = case((dated_before(table, dates), 1), else_=0)
    oldest = [
        func.min(case((and_(*(prior.column.is_(None) for prior in dates[:i]), item.column.is_not(None)), item.column)))
        for i, item in enumerate(dates)
    ]
    query = (
        select(_task_type(table), func.sum(is_stale, type_=Integer), *oldest)
        .where(table.status_is(policy.status), type_scope(table, policy, rule))
        .group_by(_task_type(table))
    )
    rows = []
    for task_type, stale, *firsts in conn.execute(query):
        moments = [table.from_db(first, item.column) for first, item in zip(firsts, dates, strict=True)]
        rows.append((task_type, stale, min((moment for moment in moments if moment is not None), default=None)))
    return rows


def _stale(conn: Connection, table: TaskTable, policy: Policy, now: datetime) -> StaleSummary:
    """Count the rows ``policy`` would act on, per task type (each by its own rule), and the oldest one.

    The oldest age is measured the way the policy judges: from the last heartbeat when there is one.
    """
    default, own = policy.default, [rule for rule in policy.rules if rule.task_types]
    beat = default.heartbeat_max_age
    summary = StaleSummary(
        threshold=_rule_threshold(default),
        thresholds_by_type={rule.key: _rule_threshold(rule) for rule in own},
        threshold_seconds=default.max_age.total_seconds(),
        thresholds_seconds_by_type={rule.key: rule.max_age.total_seconds() for rule in own},
        heartbeat_threshold_seconds=beat.total_seconds() if beat is not None else None,
    )
    oldest: datetime | None = None
    for rule in policy.rules:
        for task_type, stale, moment in _stale_rule(conn, table, policy, rule, now):
            if stale:
                summary.by_type[_type_key(task_type)] = summary.by_type.get(_type_key(task_type), 0) + int(stale)
                summary.count += int(stale)
            if moment is None:
                continue
            age = (now - moment).total_seconds()
            shown = _type_key(task_type)
            summary.oldest_by_type[shown] = max(summary.oldest_by_type.get(shown, age), age)
            if oldest is None or moment < oldest:
                oldest = moment
    summary.oldest_age_seconds = (now - oldest).total_seconds() if oldest is not None else None
    return summary


def _rule_threshold(rule: Rule) -> str:
    return (
        rule.threshold
        if rule.heartbeat_threshold is None
        else f"{rule.threshold}, {rule.heartbeat_threshold} heartbeat"
    )


def _zombies(conn: Connection, table: TaskTable, policies: Sequence[Policy], now: datetime) -> dict[str, StaleSummary]:
    """Zombies of the policies that fail or requeue (not those that delete), with a few of their ids."""
    summaries = {}
    for policy in policies:
        if Action.DELETE in policy.actions:
            continue
        summary = summaries[policy.status] = _stale(conn, table, policy, now)
        if summary.count:  # a top-N of the policy's own condition, asked only when there is something to find
            summary.sample_ids = sample_ids(conn, table, policy, now, ZOMBIE_SAMPLE_SIZE)
    return summaries


def collect_stats(table: TaskTable, policies: Sequence[Policy], now: datetime) -> Stats:
    """Read the table's statistics; zombies are counted against the fail and requeue ``policies``."""
    with table.engine.connect() as conn:
        counts = _counts(conn, table)
        recent = _created_since(conn, table, now - RECENT_WINDOW)
        stale = _zombies(conn, table, policies, now)
    return Stats(now, table.name, counts, recent, stale, totals_at=now)


def poll_stats(
    table: TaskTable, policies: Sequence[Policy], now: datetime, previous: Totals | None, max_age: timedelta
) -> tuple[Stats, Totals]:
    """The daemon's refresh: active statuses exactly, the rest recounted only when ``previous`` is ``max_age`` old."""
    with table.engine.connect() as conn:
        totals = previous
        if totals is None or now - totals.at >= max_age or now < totals.at:
            totals = _other_counts(conn, table, now)
        counts = _active_counts(conn, table)
        recent = _created_since(conn, table, now - RECENT_WINDOW)
        stale = _zombies(conn, table, policies, now)
    for key, count in totals.counts.items():
        counts[key] = counts.get(key, 0) + count
    return Stats(now, table.name, counts, recent, stale, totals_at=totals.at), totals


def _share(count: int, total: int) -> str:
    return f"{100 * count / total:5.1f}%" if total else "  0.0%"


def render_report(stats: Stats) -> str:
    """Return the human statistics report."""
    rule = "=" * 50
    total = stats.total
    lines = [rule, f"Statistics of table {stats.table}", f"at {stats.now:%Y-%m-%d %H:%M:%S} UTC", rule]
    lines += [f"Total tasks: {total}", "", "By status:"]
    for status, count in stats.by_status.items():
        if count or status not in STATUS_ORDER:
            lines.append(f"  {status:<12} : {count:>6} ({_share(count, total)})")
    lines += ["", "By type:"]
    for task_type, count in stats.by_type.items():
        lines.append(f"  {task_type:<18} : {count:>6} ({_share(count, total)})")
    lines += ["", f"Created in the last 24 hours: {stats.created_last_24h}", "", "Needing attention:"]
    for status, summary in stats.stale.items():
        own = "".join(f"; {task_type} >{threshold}" for task_type, threshold in summary.thresholds_by_type.items())
        lines.append(f"  {status} past timeout (>{summary.threshold}{own}): {summary.count}")
    lines.append(rule)
    return "\n".join(lines)
