"""Applying policies: batches of matching rows, the conditional write, and the counts of each pass.

Each rule reads its matches as its plan says (``plans``, made once per run from the table's
indexes): in keyset batches along an index that serves it (``selection.batches``), or range by
range of the primary key (``keywalk``); a pure purge deletes by range (``ranges``).
``writes.write_batch`` changes each batch under the rule's whole condition, re-checked by the
database. The dry run branches here, in ``apply_policy``, and only here: it counts in the database
(``counting``) and reads no batch.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from loguru import logger

from reaper.database.schema import ExistingIndex
from reaper.database.table import TaskTable
from reaper.engine.counting import count_policy, counted_plans, sample_ids
from reaper.engine.keywalk import KeyWalk, key_batches
from reaper.engine.plans import Plan, RuleCount, describe_plans, plan_policies
from reaper.engine.ranges import write_by_ranges, writes_by_range
from reaper.engine.selection import Batch, batches
from reaper.engine.sizing import MAX_BATCH_SIZE, MAX_ID_LIST, BatchSizer
from reaper.engine.throttle import Throttle
from reaper.engine.writes import BatchOutcome, WriteContext, write_batch
from reaper.policy.policies import Action, Policy, Rule
from reaper.results import PolicyResult, RunResult, done_text
from reaper.safety.archive import Archive

SAMPLE_SIZE = 5
LOCK_CHECK_SECONDS = 1.0
LOGGED_IDS_PER_BATCH = 10
# The status each action writes: a fail, failure; a requeue, pending (and failure past the attempts bound).
WRITTEN_STATUSES = {"failure": {Action.FAIL, Action.REQUEUE}, "pending": {Action.REQUEUE}}


@dataclass(frozen=True)
class RunOptions:
    """How a pass runs: dry or not, batch size, pacing, limits, and a stop request."""

    dry_run: bool = False
    batch_size: int = 1000  # the first batch's size
    batch_time_seconds: float | None = None  # see sizing.BatchSizer; None: every batch is batch_size
    max_batch_size: int | None = None  # how far batches may grow; None: never past batch_size
    sample_size: int = SAMPLE_SIZE
    sleep_seconds: float = 0.0
    max_runtime_seconds: float | None = None
    max_retries: int = 3
    stop_requested: Callable[[], str | None] = lambda: None  # why the pass should stop now (a signal), or None
    still_exclusive: Callable[[], bool] = lambda: True
    archive: Archive | None = None
    throttle: Throttle | None = None  # pauses (or stops) the pass while the server is busy or a replica lags
    progress: Callable[[str, int], None] = lambda policy, rows: None
    sleep: Callable[[float], None] = time.sleep
    timer: Callable[[], float] = time.monotonic
    # the table's indexes as read at the start of a one-shot run; None: read when the pass plans (each of
    # a daemon's passes, so that an index added meanwhile is used)
    indexes: tuple[ExistingIndex, ...] | None = None


def _record_batch(result: PolicyResult, batch: Batch, outcome: BatchOutcome, sample_size: int) -> None:
    """Count one batch into ``result`` and the line of its rule."""
    result.batches += 1
    result.matched += batch.size
    result.affected += outcome.affected
    rule = result.rules[batch.rule.key]
    rule.matched += batch.size
    rule.affected += outcome.affected
    result.done.update(outcome.done)
    rule.done.update(outcome.done)
    result.skipped += outcome.skipped
    result.retries += outcome.retries
    result.skip_reasons.update(outcome.reasons)
    # The smallest ids changed: the ones a dry run's sample shows too (see ``counting``).
    result.sample_ids = heapq.nsmallest(sample_size, [*result.sample_ids, *(row.id for row in batch.rows)])
    ids = batch.ids
    if not ids:
        return
    result.first_id = min(ids) if result.first_id is None else min(result.first_id, *ids)
    result.last_id = max(ids) if result.last_id is None else max(result.last_id, *ids)


def _record_count(result: PolicyResult, rule: Rule, count: RuleCount) -> None:
    """Count into ``result`` what a dry run found for one rule (nothing is read, so no batch)."""
    done = count.done(rule)
    result.matched += count.matched
    result.rules[rule.key].matched += count.matched
    result.done.update(done)
    result.rules[rule.key].done.update(done)  # one count per rule: its line holds exactly these
    lows = [value for value in (result.first_id, count.low) if value is not None]
    highs = [value for value in (result.last_id, count.high) if value is not None]
    result.first_id = min(lows) if lows else None
    result.last_id = max(highs) if highs else None


class Deadline:
    """When a pass must stop: at a stop request, at the end of its run-time budget, or once its lock is lost."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        started = options.timer()
        self.ends_at = None if options.max_runtime_seconds is None else started + options.max_runtime_seconds
        self.lock_checked_at: float | None = None

    def stop_reason(self) -> str | None:
        """Why the pass must stop now, or ``None`` while it may go on."""
        requested = self.options.stop_requested()
        if requested:
            return requested
        if self.ends_at is not None and self.options.timer() >= self.ends_at:
            return f"max runtime of {self.options.max_runtime_seconds:g} s reached"
        if self._lock_check_due() and not self.options.still_exclusive():
            return "the run lock was lost (the database dropped its session)"
        return None

    def _lock_check_due(self) -> bool:
        # A round trip per batch cost a few per cent of a purge; every write re-checks its rows'
        # condition anyway, so a lost lock found up to a second late does no harm.
        now = self.options.timer()
        if self.lock_checked_at is not None and now - self.lock_checked_at < LOCK_CHECK_SECONDS:
            return False
        self.lock_checked_at = now
        return True


def _throttled(options: RunOptions, deadline: Deadline) -> str | None:
    """Wait while the server is busy or a replica lags (see ``throttle``); say why the pass must stop instead."""
    return options.throttle.wait(deadline.stop_reason) if options.throttle is not None else None


def _log_batch(policy: Policy, batch: Batch, outcome: BatchOutcome, number: int) -> None:
    rows = batch.rows
    ids = ", ".join(str(row.id) for row in rows[:LOGGED_IDS_PER_BATCH])
    more = " ..." if len(rows) > LOGGED_IDS_PER_BATCH else ""
    if batch.id_span is not None:  # deleted along the primary key, ids not read back
        ids, more = f"{batch.id_span[0]} to {batch.id_span[1]}", ""
    skipped = f", {outcome.skipped} skipped" if outcome.skipped else ""
    done = ", ".join(f"{action} {count}" for action, count in outcome.done.items()) or f"{batch.rule.action.done} 0"
    scope = f" [{batch.rule.key}]" if batch.rule.task_types else ""
    logger.info(
        f"{policy.name}{scope}: {done} of {batch.size} rows in batch {number}{skipped} (ids {ids}{more})"
    )


def _written(batch: Batch, ctx: WriteContext, sizer: BatchSizer) -> tuple[Batch, BatchOutcome]:
    started = sizer.timer()
    outcome = write_batch(ctx, batch.rows)
    sizer.observe(len(batch.rows), sizer.timer() - started)
    return batch, outcome


def _rule_batches_written(
    table: TaskTable, ctx: WriteContext, plan: Plan, options: RunOptions, pause: Callable[[], bool]
) -> Iterator[tuple[Batch, BatchOutcome]]:
    """Each batch of one rule and what was done to it: deleted or failed by range where possible (see
    ``ranges``), else read as rows (along its index, or range by range of the primary key) and
    written one batch at a time."""
    policy, rule, target = ctx.policy, ctx.rule, options.batch_time_seconds
    if plan.found is not None and not plan.found.matched:
        return  # the run's opening count found nothing: no walk of the whole table for it
    if writes_by_range(table, policy, plan, options.archive is not None):
        sizer = BatchSizer(options.batch_size, target, options.timer, options.max_batch_size)
        yield from write_by_ranges(table, rule, plan, sizer, pause, ctx, options.sample_size)
        return
    growth = None if options.archive is not None else options.max_batch_size  # an archive holds whole rows
    ceiling = None if growth is None else min(growth, MAX_ID_LIST)  # the write binds every id
    sizer = BatchSizer(options.batch_size, target, options.timer, ceiling)
    if plan.index is not None:
        read = batches(table, policy, ctx.now, sizer, pause, rule)
    else:
        reads = BatchSizer(options.batch_size, target, options.timer, MAX_BATCH_SIZE)
        read = key_batches(KeyWalk(table, policy, rule, ctx.now), sizer, reads, pause)
    for batch in read:
        yield _written(batch, ctx, sizer)


def _count_dry(
    table: TaskTable, policy: Policy, now: datetime, plans: dict[Rule, Plan], options: RunOptions, result: PolicyResult
) -> PolicyResult:
    """A dry run of ``policy``: what it matches and a real run would do, counted by the database."""
    for rule, count in count_policy(table, policy, now, plans).items():
        _record_count(result, rule, count)
        if count.matched:
            options.progress(policy.name, count.matched)
    if result.matched and options.sample_size:
        with table.engine.connect() as conn:
            result.sample_ids = sample_ids(conn, table, policy, now, options.sample_size)
    return result


def apply_policy(
    table: TaskTable,
    policy: Policy,
    now: datetime,
    options: RunOptions,
    deadline: Deadline | None = None,
    result: PolicyResult | None = None,
    plans: dict[Rule, Plan] | None = None,
) -> PolicyResult:
    """Run ``policy`` over the whole table in batches (a dry run: count it) and return its counts,
    counted into ``result`` as each batch commits, when given: a caller keeps them if the pass fails."""
    deadline = deadline or Deadline(options)
    result = result or PolicyResult.starting(policy, now)
    plans = plans if plans is not None else plan_policies(table, [policy])[policy.name]
    if options.dry_run:
        return _count_dry(table, policy, now, plans, options, result)

    def pause_then_check() -> bool:
        """Pause between batches, then say whether the next batch may start (the deadline may have come)."""
        if options.sleep_seconds:
            options.sleep(options.sleep_seconds)
        result.stop_reason = deadline.stop_reason() or _throttled(options, deadline)
        return result.stop_reason is None

    for number, rule in enumerate(policy.rules):
        if number:  # each rule starts a walk of its own: the load is read before its first batch too
            result.stop_reason = deadline.stop_reason() or _throttled(options, deadline)
            if result.stop_reason is not None:
                break
        ctx = WriteContext(table, policy, rule, now, options.max_retries, options.sleep, options.archive)
        for batch, outcome in _rule_batches_written(table, ctx, plans[rule], options, pause_then_check):
            if not batch.size:  # a range whose rows all changed under us, or the empty end of a segment
                continue
            _record_batch(result, batch, outcome, options.sample_size)
            options.progress(policy.name, batch.size)
            _log_batch(policy, batch, outcome, result.batches)
            result.stop_reason = deadline.stop_reason()
            if result.stop_reason is not None:
                return result
        if result.stop_reason is not None:
            break
    return result


def _log_policy(result: PolicyResult, dry_run: bool) -> None:
    done = done_text(result.done, result.action, result.affected, dry_run)
    verb = f"{result.matched} {done}" if dry_run else done
    skipped = f", {result.skipped} skipped ({dict(result.skip_reasons)})" if result.skipped else ""
    logger.info(
        f"{result.policy}: {result.matched} {result.status} rows older than {result.threshold}, {verb}{skipped}"
    )


def run_policies(
    table: TaskTable, policies: Sequence[Policy], now: datetime, options: RunOptions, run: RunResult | None = None
) -> RunResult:
    """Apply each policy in turn and return what each matched and changed.

    Counts go into ``run`` (a new result when not given) as each batch commits, so a caller that
    keeps it knows what a pass that failed half-way had changed.
    """
    deadline = Deadline(options)
    started = options.timer()
    run = run or RunResult(dry_run=options.dry_run, now=now, policies={})
    writes = set().union(*(policy.actions for policy in policies)) if policies else set()
    # A vocabulary that cannot be written fails before any batch; the spelling rows hold is looked up
    # at the first write (a scan where the status has no index and no row of it).
    if writes & {Action.FAIL, Action.REQUEUE}:
        table.check_writable("failure")
    if Action.REQUEUE in writes:
        table.check_writable("pending")
    # The indexes as they are now, once per run; the rules without an index counted in one pass, which
    # also finds how rows spell the statuses a real run writes.
    written = [] if options.dry_run else [role for role, by in WRITTEN_STATUSES.items() if writes & by]
    plans = counted_plans(table, policies, now, ends=options.dry_run, written=written, indexes=options.indexes)
    # How each rule reads, for whoever diagnoses a slow run; --check-indexes shows it to a person.
    logger.debug(f"plan: {describe_plans(plans)}")
    for policy in policies:
        run.stop_reason = deadline.stop_reason() or _throttled(options, deadline)  # before each policy's first batch
        if run.stop_reason is not None:
            break
        result = run.policies[policy.name] = PolicyResult.starting(policy, now)
        apply_policy(table, policy, now, options, deadline, result, plans[policy.name])
        _log_policy(result, options.dry_run)
        run.stop_reason = result.stop_reason
        if run.stop_reason is not None:
            break
    run.duration_seconds = options.timer() - started
    run.throttle = dict(options.throttle.seconds) if options.throttle is not None else {}
    return run
