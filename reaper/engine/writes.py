"""The conditional writes: fail, requeue or delete one batch, retrying lock conflicts, isolating refused rows.

Every write carries the policy's whole condition in its WHERE clause, so a row that changed since
it was selected is left alone. A batch that keeps hitting lock conflicts after the retries is
skipped (its rows are still there for the next run); a batch the database refuses because of a
constraint (a foreign key) is split in halves until the refused rows are found and skipped, and
the rest is written.

A fail or a requeue writes the same values on every row of a batch (the reason names the limit and
the moment before which the row's age column had to lie, not the row's own age, which its columns
keep): so one statement writes the batch, and a walk along the primary key writes a stretch of ids
without reading its rows (``ranges``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from loguru import logger
from sqlalchemy import and_, case, delete, func, literal, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Delete, Update
from sqlalchemy.sql.elements import ColumnElement

from reaper.database.connection import database_errors
from reaper.database.table import TaskTable
from reaper.database.values import exact_columns
from reaper.engine.rows import TaskRow
from reaper.errors import ConstraintRefused, LockConflict
from reaper.policy.matching import Dating, datings, rule_condition
from reaper.policy.policies import Action, Policy, Rule
from reaper.safety.archive import Archive

RETRY_BASE_SECONDS = 0.2


@dataclass
class BatchOutcome:
    """What one write did: rows affected (by action done), rows skipped and why."""

    affected: int = 0
    skipped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)  # rows skipped, by why
    retries: int = 0
    done: Counter[str] = field(default_factory=Counter)  # rows affected, by action done

    def add(self, other: BatchOutcome) -> None:
        """Fold another outcome into this one."""
        self.affected += other.affected
        self.skipped += other.skipped
        self.retries += other.retries
        self.reasons.update(other.reasons)
        self.done.update(other.done)


@dataclass(frozen=True)
class WriteContext:
    """Everything a batch write needs besides the rows: the rule, its whole condition, the moment."""

    table: TaskTable
    policy: Policy
    rule: Rule
    now: datetime
    max_retries: int
    sleep: Callable[[float], None]
    archive: Archive | None = None

    @cached_property
    def selection(self) -> ColumnElement[bool]:
        """The rule's whole condition, re-checked by every write (built once per pass)."""
        return rule_condition(self.table, self.policy, self.rule, self.now)


def failure_reason(policy: Policy, rule: Rule, dating: Dating, ending: str) -> str:
    """Return the text written into the error column of the rows that ``rule`` fails or requeues when
    ``dating`` (the first of their age columns with a value) dates them.

    The same for every such row of a run, so that the database writes a batch in one statement: the
    row's own age is in the column named, which a fail leaves as it was.
    """
    scope = f" for {rule.key}" if rule.task_types else ""
    cutoff = f"{dating.column.name} before {dating.cutoff:%Y-%m-%d %H:%M:%S} UTC"
    what = "no heartbeat" if dating.is_heartbeat else policy.status
    return f"reaper {policy.name}: {what} for over the {dating.threshold} limit{scope} ({cutoff}); {ending}"


def _by_dating(ctx: WriteContext, column: Any, value_of: Callable[[str], Any], ending: str) -> ColumnElement[Any]:
    """``column``'s value for each row, from the reason for the age column that dates it: a constant
    when one text serves them all, else a ``CASE`` on the first age column with a value."""
    dates = datings(ctx.table, ctx.policy, ctx.rule, ctx.now)
    values = [literal(value_of(failure_reason(ctx.policy, ctx.rule, dating, ending)), column.type) for dating in dates]
    if len(dates) == 1:
        return values[0]
    whens = [(dating.column.is_not(None), value) for dating, value in zip(dates[:-1], values[:-1], strict=True)]
    return case(*whens, else_=values[-1])


def _reason_values(ctx: WriteContext, ending: str, with_result: bool) -> dict[Any, Any]:
    """The values that say why a row was written: its reason in the error column, and (``with_result``)
    its exception where Celery reads it, with the content type and encoding."""
    table = ctx.table
    values: dict[Any, Any] = {}
    error = table.column("error")
    if error is not None:
        values[error] = _by_dating(ctx, error, table.fit_error, ending)
    failure = table.celery_failure
    if with_result and failure is not None:
        status = ctx.policy.status
        values[failure.result] = _by_dating(ctx, failure.result, lambda text: failure.stored(status, text), ending)
        values.update(failure.constants())
    return values


def failed_values(conn: Connection, ctx: WriteContext, ending: str) -> dict[Any, Any]:
    """The values a fail writes on every row of a batch: the status, the reason, the moment."""
    table = ctx.table
    values: dict[Any, Any] = {table.status: table.write_value(conn, "failure")}
    values.update(_reason_values(ctx, ending, with_result=True))
    for role in ("finished_at", "updated_at"):
        column = table.column(role)
        if column is not None:
            values[column] = table.to_db(ctx.now, column)
    return values


def _keys(rows: Sequence[TaskRow]) -> list[tuple[Any, ...]]:
    return [row.key for row in rows]


def _update(conn: Connection, ctx: WriteContext, rows: Sequence[TaskRow], values: dict[Any, Any], *extra: Any) -> int:
    """Update ``rows`` under the rule's whole condition (and ``extra``); return how many rows changed."""
    query = update(ctx.table.table).where(ctx.table.key_in(_keys(rows)), ctx.selection, *extra).values(values)
    return int(conn.execute(query).rowcount)


def _set_failed(conn: Connection, ctx: WriteContext, rows: Sequence[TaskRow], ending: str, *extra: Any) -> int:
    return _update(conn, ctx, rows, failed_values(conn, ctx, ending), *extra)


def _requeue(conn: Connection, ctx: WriteContext, rows: Sequence[TaskRow]) -> dict[str, int]:
    """Set rows back to pending (past the attempts bound: to failure), in one transaction."""
    table, stamp = ctx.table, f"{ctx.now:%Y-%m-%d %H:%M:%S} UTC"
    attempts = table.column("attempts")
    values: dict[Any, Any] = {table.status: table.write_value(conn, "pending")}
    values.update(_reason_values(ctx, f"requeued at {stamp}", with_result=False))
    for role in ("started_at", "heartbeat_at"):  # a stale beat would condemn the next worker's run at once
        if table.column(role) is not None:
            values[table.columns[role]] = None
    values[table.columns["updated_at"]] = table.to_db(ctx.now, table.columns["updated_at"])  # the wait restarts
    under_bound: list[Any] = []
    if attempts is not None and ctx.rule.max_attempts is not None:
        values[attempts] = func.coalesce(attempts, 0) + 1
        under_bound = [or_(attempts.is_(None), attempts < ctx.rule.max_attempts)]
    requeued = _update(conn, ctx, rows, values, *under_bound)
    if not under_bound:
        return {"requeued": requeued}
    ending = f"set to failure at {stamp}: its attempts reached the bound of {ctx.rule.max_attempts}"
    assert attempts is not None
    failed = _set_failed(conn, ctx, rows, ending, attempts >= ctx.rule.max_attempts)
    return {"requeued": requeued, "failed": failed}


def _delete(conn: Connection, ctx: WriteContext, rows: Sequence[TaskRow]) -> int:
    keys = _keys(rows)
    if ctx.archive is None:
        return int(conn.execute(delete(ctx.table.table).where(ctx.table.key_in(keys), ctx.selection)).rowcount)
    deleted = _delete_returning(conn, ctx, keys)
    ctx.archive.write(conn, deleted)  # durable before the caller commits the delete
    return len(deleted)


def _delete_returning(conn: Connection, ctx: WriteContext, keys: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Delete the matching rows among ``keys`` and return them whole: exactly the rows deleted."""
    table = ctx.table.table
    condition = and_(ctx.table.key_in(keys), ctx.selection)
    whole = exact_columns(table, conn.dialect.name)  # each value as the database holds it
    if ctx.table.dialect.deletes_returning(conn.engine):
        return [dict(row) for row in conn.execute(delete(table).where(condition).returning(*whole)).mappings()]
    # No RETURNING (MySQL): lock the rows, so that the ones read are the ones deleted; the condition
    # again, so that only they are deleted.
    locked = [dict(row) for row in conn.execute(select(*whole).where(condition).with_for_update()).mappings()]
    if locked:
        read = [tuple(row[column.name] for column in ctx.table.key) for row in locked]
        conn.execute(delete(table).where(ctx.table.key_in(read), ctx.selection))
    return locked


def _failed_at(ctx: WriteContext) -> str:
    return f"set to failure at {ctx.now:%Y-%m-%d %H:%M:%S} UTC"


def writing_where(conn: Connection, ctx: WriteContext, bounds: ColumnElement[bool]) -> Delete | Update:
    """The statement that deletes or fails (the rule's action, nothing archived) the rows within ``bounds``
    that match the rule's whole condition."""
    table = ctx.table.table
    if ctx.rule.action is Action.DELETE:
        return delete(table).where(bounds, ctx.selection)
    assert ctx.rule.action is Action.FAIL, "a requeue writes two statements: read its rows (write_batch)"
    return update(table).where(bounds, ctx.selection).values(failed_values(conn, ctx, _failed_at(ctx)))


def write_where(conn: Connection, ctx: WriteContext, bounds: ColumnElement[bool]) -> int:
    """Write ``writing_where``'s statement on ``conn``'s transaction; return how many rows were written."""
    return int(conn.execute(writing_where(conn, ctx, bounds)).rowcount)


def _write_once(ctx: WriteContext, rows: Sequence[TaskRow]) -> dict[str, int]:
    """Write one batch in one transaction; return the rows affected by action done."""
    with ctx.table.engine.begin() as conn:
        if ctx.rule.action is Action.DELETE:
            return {"deleted": _delete(conn, ctx, rows)}
        if ctx.rule.action is Action.REQUEUE:
            return _requeue(conn, ctx, rows)
        return {"failed": _set_failed(conn, ctx, rows, _failed_at(ctx))}


def _write_retrying(ctx: WriteContext, rows: Sequence[TaskRow], outcome: BatchOutcome) -> dict[str, int] | None:
    """Write, retrying lock conflicts; return rows affected by action, or ``None`` when the retries ran out."""
    for attempt in range(ctx.max_retries + 1):
        try:
            with database_errors():
                return _write_once(ctx, rows)
        except LockConflict as exc:
            if attempt == ctx.max_retries:
                logger.warning(f"{ctx.policy.name}: lock conflict on {len(rows)} rows, skipped: {exc}")
                return None
            outcome.retries += 1
            ctx.sleep(RETRY_BASE_SECONDS * 2**attempt)
    return None


def write_batch(ctx: WriteContext, rows: Sequence[TaskRow]) -> BatchOutcome:
    """Fail or delete ``rows`` under the policy's condition; skip what the database will not take."""
    outcome = BatchOutcome()
    try:
        affected = _write_retrying(ctx, rows, outcome)
    except ConstraintRefused as exc:
        if len(rows) == 1:
            reason = f"refused by {exc.refused_by}"
            logger.warning(f"{ctx.policy.name}: id {rows[0].id} {reason}, skipped")
            outcome.add(BatchOutcome(skipped=1, reasons=Counter({reason: 1})))
            return outcome
        middle = len(rows) // 2
        outcome.add(write_batch(ctx, rows[:middle]))
        outcome.add(write_batch(ctx, rows[middle:]))
        return outcome
    if affected is None:
        outcome.add(BatchOutcome(skipped=len(rows), reasons=Counter({"lock conflict": len(rows)})))
    else:
        outcome.add(BatchOutcome(affected=sum(affected.values()), done=Counter(affected)))
    return outcome
