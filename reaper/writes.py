"""The conditional writes: fail or delete one batch, retrying lock conflicts, isolating refused rows.

Every write carries the policy's whole condition in its WHERE clause, so a row that changed since
it was selected is left alone. A batch that keeps hitting lock conflicts after the retries is
skipped (its rows are still there for the next run); a batch the database refuses because of a
constraint (a foreign key) is split in halves until the refused rows are found and skipped, and
the rest is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from loguru import logger
from sqlalchemy import and_, case, delete, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement

from reaper.archive import Archive
from reaper.db import constraint_name, is_lock_conflict, refused_by_constraint
from reaper.policies import Action, Policy
from reaper.table import TaskTable

RETRY_BASE_SECONDS = 0.2


@dataclass
class BatchOutcome:
    """What one write did: rows affected, rows skipped and why."""

    affected: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    retries: int = 0

    def add(self, other: BatchOutcome) -> None:
        """Fold another outcome into this one."""
        self.affected += other.affected
        self.skipped += other.skipped
        self.retries += other.retries
        for reason, count in other.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + count


@dataclass(frozen=True)
class WriteContext:
    """Everything a batch write needs besides the rows."""

    table: TaskTable
    policy: Policy
    selection: ColumnElement[bool]
    now: datetime
    max_retries: int
    sleep: Callable[[float], None]
    archive: Archive | None = None


def failure_reason(policy: Policy, dated_from: datetime, now: datetime) -> str:
    """Return the text written into the error column of a row that ``policy`` sets to failure."""
    hours = (now - dated_from).total_seconds() / 3600
    age = f"{hours:.1f} h" if hours < 72 else f"{hours / 24:.1f} d"
    return (
        f"reaper {policy.name}: {policy.status} for {age}, over the {policy.threshold} limit "
        f"(since {dated_from:%Y-%m-%d %H:%M:%S} UTC); set to failure at {now:%Y-%m-%d %H:%M:%S} UTC"
    )


def _fail(conn: Connection, ctx: WriteContext, rows: Sequence[Row[Any]]) -> int:
    table = ctx.table
    values: dict[Any, Any] = {table.status: table.write_value(conn, "failure")}
    error = table.column("error")
    if error is not None:
        reasons = {}
        dating_column = table.age_columns(ctx.policy.status)[0]  # the columns of one table share a type
        for row in rows:
            dated_from = table.from_db(row[-1], dating_column)  # the age is the last column selected
            assert dated_from is not None  # the selection only matches rows with an age
            reasons[row[0]] = table.fits(error, failure_reason(ctx.policy, dated_from, ctx.now))
        values[error] = case(reasons, value=table.id)
    for role in ("finished_at", "updated_at"):
        column = table.column(role)
        if column is not None:
            values[column] = table.to_db(ctx.now, column)
    ids = [row[0] for row in rows]
    return int(conn.execute(update(table.table).where(table.id.in_(ids), ctx.selection).values(values)).rowcount)


def _delete(conn: Connection, ctx: WriteContext, rows: Sequence[Row[Any]]) -> int:
    ids = [row[0] for row in rows]
    if ctx.archive is None:
        return int(conn.execute(delete(ctx.table.table).where(ctx.table.id.in_(ids), ctx.selection)).rowcount)
    deleted = _delete_returning(conn, ctx, ids)
    ctx.archive.write(conn, deleted)  # durable before the caller commits the delete
    return len(deleted)


def _delete_returning(conn: Connection, ctx: WriteContext, ids: list[Any]) -> list[dict[str, Any]]:
    """Delete the matching rows among ``ids`` and return them whole: exactly the rows deleted."""
    table = ctx.table.table
    condition = and_(ctx.table.id.in_(ids), ctx.selection)
    if conn.dialect.delete_returning:
        return [dict(row) for row in conn.execute(delete(table).where(condition).returning(*table.c)).mappings()]
    # No RETURNING (MySQL): lock the rows, so that the ones read are the ones deleted.
    locked = [dict(row) for row in conn.execute(select(table).where(condition).with_for_update()).mappings()]
    if locked:
        conn.execute(delete(table).where(ctx.table.id.in_([row[ctx.table.id.name] for row in locked])))
    return locked


def _write_once(ctx: WriteContext, rows: Sequence[Row[Any]]) -> int:
    with ctx.table.engine.begin() as conn:
        return _fail(conn, ctx, rows) if ctx.policy.action is Action.FAIL else _delete(conn, ctx, rows)


def _write_retrying(ctx: WriteContext, rows: Sequence[Row[Any]], outcome: BatchOutcome) -> int | None:
    """Write, retrying lock conflicts; return rows affected, or ``None`` when the retries ran out."""
    for attempt in range(ctx.max_retries + 1):
        try:
            return _write_once(ctx, rows)
        except DBAPIError as exc:
            if not is_lock_conflict(exc):
                raise
            if attempt == ctx.max_retries:
                logger.warning(f"{ctx.policy.name}: lock conflict on {len(rows)} rows, skipped: {exc.orig}")
                return None
            outcome.retries += 1
            ctx.sleep(RETRY_BASE_SECONDS * 2**attempt)
    return None


def write_batch(ctx: WriteContext, rows: Sequence[Row[Any]]) -> BatchOutcome:
    """Fail or delete ``rows`` under the policy's condition; skip what the database will not take."""
    outcome = BatchOutcome()
    try:
        affected = _write_retrying(ctx, rows, outcome)
    except DBAPIError as exc:
        if not refused_by_constraint(exc):
            raise
        if len(rows) == 1:
            reason = f"refused by {constraint_name(exc)}"
            logger.warning(f"{ctx.policy.name}: id {rows[0][0]} {reason}, skipped")
            outcome.add(BatchOutcome(skipped=1, reasons={reason: 1}))
            return outcome
        middle = len(rows) // 2
        outcome.add(write_batch(ctx, rows[:middle]))
        outcome.add(write_batch(ctx, rows[middle:]))
        return outcome
    if affected is None:
        outcome.add(BatchOutcome(skipped=len(rows), reasons={"lock conflict": len(rows)}))
    else:
        outcome.affected += affected
    return outcome
