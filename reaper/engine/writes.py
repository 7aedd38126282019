"""The conditional writes: fail, requeue or delete one batch, retrying lock conflicts, isolating refused rows.

Every write carries the policy's whole condition in its WHERE clause, so a row that changed since
it was selected is left alone. A batch that keeps hitting lock conflicts after the retries is
skipped (its rows are still there for the next run); a batch the database refuses because of a
constraint (a foreign key) is split in halves until the refused rows are found and skipped, and
the rest is written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from loguru import logger
from sqlalchemy import and_, bindparam, delete, func, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from reaper.database.connection import database_errors
from reaper.database.table import TaskTable
from reaper.database.values import exact_columns
from reaper.engine.rows import TaskRow
from reaper.errors import ConstraintRefused, LockConflict
from reaper.formats import duration_text
from reaper.policy.matching import Dating, dated_by, datings, rule_condition
from reaper.policy.policies import Action, Policy, Rule
from reaper.safety.archive import Archive

RETRY_BASE_SECONDS = 0.2
CASE_ROWS = 500  # rows per UPDATE where each row's own values are given by a CASE on its key


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


def failure_reason(policy: Policy, rule: Rule, dating: Dating, dated_from: datetime, now: datetime, ending: str) -> str:
    """Return the text written into the error column of a row that ``rule`` fails or requeues."""
    age = duration_text((now - dated_from).total_seconds())
    scope = f" for {rule.key}" if rule.task_types else ""
    if dating.is_heartbeat:
        return (
            f"reaper {policy.name}: no heartbeat for {age}, over the {dating.threshold} limit{scope} "
            f"(last at {dated_from:%Y-%m-%d %H:%M:%S} UTC); {ending}"
        )
    return (
        f"reaper {policy.name}: {policy.status} for {age}, over the {dating.threshold} limit{scope} "
        f"(since {dated_from:%Y-%m-%d %H:%M:%S} UTC); {ending}"
    )


def _reason_texts(ctx: WriteContext, rows: Sequence[TaskRow], ending: str) -> dict[tuple[Any, ...], str]:
    """Return each row's reason, by key."""
    dates = datings(ctx.table, ctx.policy, ctx.rule, ctx.now)
    reasons = {}
    for row in rows:
        dated = dated_by(ctx.table, dates, row.ages)
        assert dated is not None  # the selection only matches rows with an age
        reasons[row.key] = failure_reason(ctx.policy, ctx.rule, *dated, ctx.now, ending)
    return reasons


Keyed = dict[Any, dict[tuple[Any, ...], Any]]  # column -> row key -> that row's value


def _reasons(ctx: WriteContext, texts: dict[tuple[Any, ...], str]) -> Keyed:
    """Each row's reason in the error column (nothing when the table has none)."""
    table, error = ctx.table, ctx.table.column("error")
    if error is None:
        return {}
    return {error: {key: table.fit_error(text) for key, text in texts.items()}}


def _exceptions(ctx: WriteContext, texts: dict[tuple[Any, ...], str]) -> tuple[Keyed, dict[Any, Any]]:
    """The values that store each failed row's exception where Celery reads it (none without a result
    column): the result, row by row, and the content type and encoding, the same for every row."""
    failure = ctx.table.celery_failure
    if failure is None:
        return {}, {}
    stored = {key: failure.stored(ctx.policy.status, text) for key, text in texts.items()}
    return {failure.result: stored}, failure.constants()


def _keys(rows: Sequence[TaskRow]) -> list[tuple[Any, ...]]:
    return [row.key for row in rows]


def _keyed_update(
    conn: Connection, ctx: WriteContext, rows: Sequence[TaskRow], values: dict[Any, Any], keyed: Keyed, *extra: Any
) -> int:
    """Update ``rows`` under the rule's whole condition (and ``extra``): ``values`` for every row, and
    ``keyed`` (a column's value for each row) row by row; return how many rows changed.

    Where the driver sends many statements in one call (``dialect.updates_row_by_row``: SQLite's
    C loop, psycopg's pipeline), one ``UPDATE ... WHERE id = ?`` per row, compiled once: the database
    finds each row by its key. Elsewhere (PyMySQL sends them one by one) one statement with a
    ``CASE`` on the key per column, which costs the database a search of the list for every row: so
    ``CASE_ROWS`` rows per statement, all in the one transaction (statements of one shape also reuse
    SQLAlchemy's compiled form).
    """
    table = ctx.table
    if keyed and len(table.key) == 1 and table.dialect.updates_row_by_row:
        names = {column: f"reaper_value_{number}" for number, column in enumerate(keyed)}
        statement = update(table.table).where(table.id == bindparam("reaper_key_"), ctx.selection, *extra)
        statement = statement.values({**values, **{column: bindparam(name) for column, name in names.items()}})
        each = [
            {"reaper_key_": row.key[0], **{names[column]: by_key[row.key] for column, by_key in keyed.items()}}
            for row in rows
        ]
        return int(conn.execute(statement, each).rowcount)
    changed, step = 0, CASE_ROWS if keyed else max(len(rows), 1)
    for start in range(0, len(rows), step):
        part = rows[start : start + step]
        cased = {column: table.by_key({row.key: by_key[row.key] for row in part}) for column, by_key in keyed.items()}
        query = update(table.table).where(table.key_in(_keys(part)), ctx.selection, *extra).values({**values, **cased})
        changed += int(conn.execute(query).rowcount)
    return changed


def _set_failed(conn: Connection, ctx: WriteContext, rows: Sequence[TaskRow], ending: str, *extra: Any) -> int:
    table = ctx.table
    values: dict[Any, Any] = {table.status: table.write_value(conn, "failure")}
    texts = _reason_texts(ctx, rows, ending) if table.column("error") is not None or table.celery_failure else {}
    keyed = _reasons(ctx, texts)
    results, constants = _exceptions(ctx, texts)
    keyed.update(results)
    values.update(constants)
    for role in ("finished_at", "updated_at"):
        column = table.column(role)
        if column is not None:
            values[column] = table.to_db(ctx.now, column)
    return _keyed_update(conn, ctx, rows, values, keyed, *extra)


def _requeue(conn: Connection, ctx: WriteContext, rows: Sequence[TaskRow]) -> dict[str, int]:
    """Set rows back to pending (past the attempts bound: to failure), in one transaction."""
    table, stamp = ctx.table, f"{ctx.now:%Y-%m-%d %H:%M:%S} UTC"
    attempts = table.column("attempts")
    values: dict[Any, Any] = {table.status: table.write_value(conn, "pending")}
    texts = _reason_texts(ctx, rows, f"requeued at {stamp}") if table.column("error") is not None else {}
    for role in ("started_at", "heartbeat_at"):  # a stale beat would condemn the next worker's run at once
        if table.column(role) is not None:
            values[table.columns[role]] = None
    values[table.columns["updated_at"]] = table.to_db(ctx.now, table.columns["updated_at"])  # the wait restarts
    under_bound: list[Any] = []
    if attempts is not None and ctx.rule.max_attempts is not None:
        values[attempts] = func.coalesce(attempts, 0) + 1
        under_bound = [or_(attempts.is_(None), attempts < ctx.rule.max_attempts)]
    requeued = _keyed_update(conn, ctx, rows, values, _reasons(ctx, texts), *under_bound)
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


def _write_once(ctx: WriteContext, rows: Sequence[TaskRow]) -> dict[str, int]:
    """Write one batch in one transaction; return the rows affected by action done."""
    with ctx.table.engine.begin() as conn:
        if ctx.rule.action is Action.DELETE:
            return {"deleted": _delete(conn, ctx, rows)}
        if ctx.rule.action is Action.REQUEUE:
            return _requeue(conn, ctx, rows)
        return {"failed": _set_failed(conn, ctx, rows, f"set to failure at {ctx.now:%Y-%m-%d %H:%M:%S} UTC")}


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
