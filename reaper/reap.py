"""Applying policies: batches of matching rows, the conditional write, and the counts of each pass.

``selection.batches`` reads the matches in keyset batches along the recommended index;
``writes.write_batch`` changes each batch under the policy's whole condition, re-checked by the
database. The dry run branches here, in ``apply_policy``, and only here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from loguru import logger
from sqlalchemy import and_
from sqlalchemy.engine import Row
from sqlalchemy.sql.elements import ColumnElement

from reaper.archive import Archive
from reaper.policies import Action, Policy
from reaper.selection import batches
from reaper.table import TaskTable
from reaper.writes import BatchOutcome, WriteContext, write_batch

SAMPLE_SIZE = 5
LOGGED_IDS_PER_BATCH = 10


@dataclass(frozen=True)
class RunOptions:
    """How a pass runs: dry or not, batch size, pacing, limits, and a stop request."""

    dry_run: bool = False
    batch_size: int = 1000
    sample_size: int = SAMPLE_SIZE
    sleep_seconds: float = 0.0
    max_runtime_seconds: float | None = None
    max_retries: int = 3
    should_stop: Callable[[], bool] = lambda: False
    still_exclusive: Callable[[], bool] = lambda: True
    archive: Archive | None = None
    progress: Callable[[str, int], None] = lambda policy, rows: None
    sleep: Callable[[float], None] = time.sleep
    timer: Callable[[], float] = time.monotonic


@dataclass
class PolicyResult:
    """What one policy found and did in one pass."""

    policy: str
    status: str
    action: str
    threshold: str
    cutoff: datetime
    matched: int = 0
    affected: int = 0
    skipped: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    batches: int = 0
    sample_ids: list[Any] = field(default_factory=list)
    stop_reason: str | None = None
    first_id: Any = None
    last_id: Any = None

    def record(self, rows: Sequence[Row[Any]], outcome: BatchOutcome, sample_size: int) -> None:
        """Count one batch."""
        self.batches += 1
        self.matched += len(rows)
        self.affected += outcome.affected
        self.skipped += outcome.skipped
        self.retries += outcome.retries
        for reason, count in outcome.reasons.items():
            self.skip_reasons[reason] = self.skip_reasons.get(reason, 0) + count
        room = max(sample_size - len(self.sample_ids), 0)
        self.sample_ids.extend(row[0] for row in rows[:room])
        ids = [row[0] for row in rows]
        self.first_id = min(ids) if self.first_id is None else min(self.first_id, *ids)
        self.last_id = max(ids) if self.last_id is None else max(self.last_id, *ids)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form used by ``--json``."""
        return {
            "matched": self.matched,
            "affected": self.affected,
            "skipped": self.skipped,
            "skip_reasons": self.skip_reasons,
            "retries": self.retries,
            "action": self.action,
            "status": self.status,
            "threshold": self.threshold,
            "cutoff": self.cutoff.isoformat(),
            "batches": self.batches,
            "sample_ids": [_jsonable(value) for value in self.sample_ids],
            "id_range": [_jsonable(self.first_id), _jsonable(self.last_id)],
            "stopped": self.stop_reason,
        }


@dataclass
class RunResult:
    """The outcome of one pass over a list of policies."""

    dry_run: bool
    now: datetime
    policies: dict[str, PolicyResult]
    duration_seconds: float = 0.0
    stop_reason: str | None = None

    @property
    def stopped_early(self) -> bool:
        """Whether the pass ended before every policy had finished."""
        return self.stop_reason is not None

    @property
    def affected(self) -> int:
        """Rows changed or deleted by the whole pass."""
        return sum(result.affected for result in self.policies.values())

    @property
    def matched(self) -> int:
        """Rows the whole pass selected."""
        return sum(result.matched for result in self.policies.values())

    @property
    def skipped(self) -> int:
        """Rows the whole pass could not write (locked, or refused by a constraint)."""
        return sum(result.skipped for result in self.policies.values())

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form used by ``--json``."""
        return {
            "dry_run": self.dry_run,
            "now": self.now.isoformat(),
            "policies": {name: result.to_json() for name, result in self.policies.items()},
            "duration_seconds": round(self.duration_seconds, 6),
            "stopped_early": self.stopped_early,
            "stop_reason": self.stop_reason,
        }


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, int | float | str) or value is None else str(value)


def selection_of(table: TaskTable, policy: Policy, now: datetime) -> ColumnElement[bool]:
    """Return the condition a row must meet for ``policy`` at ``now``: status and age."""
    return and_(table.status_is(policy.status), table.older_than(policy.status, policy.cutoff(now)))


class _Clock:
    """Tells a pass when to stop: a stop request, or the end of its run-time budget."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        started = options.timer()
        self.deadline = None if options.max_runtime_seconds is None else started + options.max_runtime_seconds

    def stop_reason(self) -> str | None:
        if self.options.should_stop():
            return "stop requested"
        if self.deadline is not None and self.options.timer() >= self.deadline:
            return f"max runtime of {self.options.max_runtime_seconds:g} s reached"
        if not self.options.still_exclusive():
            return "the run lock was lost (the database dropped its session)"
        return None


def _log_batch(policy: Policy, rows: Sequence[Row[Any]], outcome: BatchOutcome, batch: int) -> None:
    ids = ", ".join(str(row[0]) for row in rows[:LOGGED_IDS_PER_BATCH])
    more = " ..." if len(rows) > LOGGED_IDS_PER_BATCH else ""
    skipped = f", {outcome.skipped} skipped" if outcome.skipped else ""
    logger.info(
        f"{policy.name}: {policy.action.done} {outcome.affected} of {len(rows)} rows in batch {batch}{skipped} "
        f"(ids {ids}{more})"
    )


def apply_policy(
    table: TaskTable, policy: Policy, now: datetime, options: RunOptions, clock: _Clock | None = None
) -> PolicyResult:
    """Run ``policy`` over the whole table in keyset batches and return its counts."""
    clock = clock or _Clock(options)
    result = PolicyResult(policy.name, policy.status, policy.action.value, policy.threshold, policy.cutoff(now))
    selection = selection_of(table, policy, now)
    ctx = WriteContext(table, policy, selection, now, options.max_retries, options.sleep, options.archive)
    def pause_then_check() -> bool:
        """Pause between batches, then say whether the next batch may start (the clock may have run out)."""
        if options.sleep_seconds:
            options.sleep(options.sleep_seconds)
        result.stop_reason = clock.stop_reason()
        return result.stop_reason is None

    with_age = policy.action is Action.FAIL  # only the reason written on a failed row needs the age
    for rows in batches(table, policy, now, options.batch_size, pause_then_check, with_age):
        outcome = BatchOutcome() if options.dry_run else write_batch(ctx, rows)
        result.record(rows, outcome, options.sample_size)
        options.progress(policy.name, len(rows))
        if not options.dry_run:
            _log_batch(policy, rows, outcome, result.batches)
        result.stop_reason = clock.stop_reason()
        if result.stop_reason is not None:
            break
    return result


def _log_policy(result: PolicyResult, dry_run: bool) -> None:
    done = {"fail": "failed", "delete": "deleted"}[result.action]
    verb = f"{result.matched} would be {done}" if dry_run else f"{result.affected} {done}"
    skipped = f", {result.skipped} skipped ({result.skip_reasons})" if result.skipped else ""
    logger.info(
        f"{result.policy}: {result.matched} {result.status} rows older than {result.threshold}, {verb}{skipped}"
    )


def run_policies(table: TaskTable, policies: Sequence[Policy], now: datetime, options: RunOptions) -> RunResult:
    """Apply each policy in turn and return what each matched and changed."""
    clock = _Clock(options)
    started = options.timer()
    run = RunResult(dry_run=options.dry_run, now=now, policies={})
    if any(policy.action.value == "fail" for policy in policies):
        with table.engine.connect() as conn:
            table.write_value(conn, "failure")  # a vocabulary that cannot be written fails before any batch
    for policy in policies:
        run.stop_reason = clock.stop_reason()
        if run.stop_reason is not None:
            break
        result = apply_policy(table, policy, now, options, clock)
        run.policies[policy.name] = result
        _log_policy(result, options.dry_run)
        run.stop_reason = result.stop_reason
        if run.stop_reason is not None:
            break
    run.duration_seconds = options.timer() - started
    return run
