"""Applying policies: keyset batches, the conditional write, and the counts of each pass.

Every write re-checks the policy's own condition (status and age) in its WHERE clause, so a row
that a worker changed between our SELECT and our UPDATE/DELETE is left alone; only the rows the
database reports as affected are counted. The dry run branches in ``_process_batch`` only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from loguru import logger
from sqlalchemy import and_, case, delete, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.sql.elements import ColumnElement

from reaper.policies import Action, Policy
from reaper.table import TaskTable

SAMPLE_SIZE = 5
LOGGED_IDS_PER_BATCH = 10


@dataclass(frozen=True)
class RunOptions:
    """How a pass runs: dry or not, batch size, and a stop request checked between batches."""

    dry_run: bool = False
    batch_size: int = 1000
    sample_size: int = SAMPLE_SIZE
    should_stop: Callable[[], bool] = lambda: False


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
    batches: int = 0
    sample_ids: list[Any] = field(default_factory=list)
    stopped: bool = False

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form used by ``--json``."""
        return {
            "matched": self.matched,
            "affected": self.affected,
            "action": self.action,
            "status": self.status,
            "threshold": self.threshold,
            "cutoff": self.cutoff.isoformat(),
            "batches": self.batches,
            "sample_ids": [_jsonable(value) for value in self.sample_ids],
        }


@dataclass
class RunResult:
    """The outcome of one pass over a list of policies."""

    dry_run: bool
    now: datetime
    policies: dict[str, PolicyResult]
    duration_seconds: float = 0.0
    stopped_early: bool = False

    @property
    def affected(self) -> int:
        """Rows changed or deleted by the whole pass."""
        return sum(result.affected for result in self.policies.values())

    @property
    def matched(self) -> int:
        """Rows the whole pass selected."""
        return sum(result.matched for result in self.policies.values())

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form used by ``--json``."""
        return {
            "dry_run": self.dry_run,
            "now": self.now.isoformat(),
            "policies": {name: result.to_json() for name, result in self.policies.items()},
            "duration_seconds": round(self.duration_seconds, 6),
            "stopped_early": self.stopped_early,
        }


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, int | float | str) or value is None else str(value)


def format_age(seconds: float) -> str:
    """Return an age for people: hours up to three days, then days."""
    hours = seconds / 3600
    return f"{hours:.1f} h" if hours < 72 else f"{hours / 24:.1f} d"


def failure_reason(policy: Policy, dated_from: datetime, now: datetime) -> str:
    """Return the text written into the error column of a row that ``policy`` sets to failure."""
    age = format_age((now - dated_from).total_seconds())
    return (
        f"reaper {policy.name}: {policy.status} for {age}, over the {policy.threshold} limit "
        f"(since {dated_from:%Y-%m-%d %H:%M:%S} UTC); set to failure at {now:%Y-%m-%d %H:%M:%S} UTC"
    )


def _select_batch(
    conn: Connection, table: TaskTable, policy: Policy, selection: ColumnElement[bool], after: Any, size: int
) -> Sequence[Row[Any]]:
    query = select(table.id, table.age_expression(policy.status)).where(selection)
    if after is not None:
        query = query.where(table.id > after)
    return conn.execute(query.order_by(table.id).limit(size)).all()


def _fail_rows(
    conn: Connection,
    table: TaskTable,
    policy: Policy,
    selection: ColumnElement[bool],
    rows: Sequence[Row[Any]],
    now: datetime,
) -> int:
    values: dict[Any, Any] = {table.status: table.write_value(conn, "failure")}
    error = table.column("error")
    if error is not None:
        reasons = {row[0]: table.fits(error, failure_reason(policy, _utc(table, row[1]), now)) for row in rows}
        values[error] = case(reasons, value=table.id)
    for role in ("finished_at", "updated_at"):
        column = table.column(role)
        if column is not None:
            values[column] = table.to_db(now, column)
    ids = [row[0] for row in rows]
    statement = update(table.table).where(table.id.in_(ids), selection).values(values)
    return int(conn.execute(statement).rowcount)


def _delete_rows(conn: Connection, table: TaskTable, selection: ColumnElement[bool], rows: Sequence[Row[Any]]) -> int:
    ids = [row[0] for row in rows]
    return int(conn.execute(delete(table.table).where(table.id.in_(ids), selection)).rowcount)


def _utc(table: TaskTable, value: Any) -> datetime:
    moment = table.from_db(value)
    # The selection only matches rows whose age expression is not null.
    assert moment is not None
    return moment


def _process_batch(
    table: TaskTable, policy: Policy, selection: ColumnElement[bool], after: Any, now: datetime, options: RunOptions
) -> tuple[Sequence[Row[Any]], int]:
    """Select the next batch after ``after`` and, unless dry, write it; one transaction."""
    with table.engine.begin() as conn:
        rows = _select_batch(conn, table, policy, selection, after, options.batch_size)
        if not rows or options.dry_run:
            return rows, 0
        if policy.action is Action.FAIL:
            return rows, _fail_rows(conn, table, policy, selection, rows, now)
        return rows, _delete_rows(conn, table, selection, rows)


def apply_policy(table: TaskTable, policy: Policy, now: datetime, options: RunOptions) -> PolicyResult:
    """Run ``policy`` over the whole table in keyset batches and return its counts."""
    cutoff = policy.cutoff(now)
    result = PolicyResult(policy.name, policy.status, policy.action.value, policy.threshold, cutoff)
    selection = and_(table.status_is(policy.status), table.older_than(policy.status, cutoff))
    if policy.action is Action.FAIL:
        with table.engine.connect() as conn:
            table.write_value(conn, "failure")  # a vocabulary that cannot be written fails before any batch
    after: Any = None
    while True:
        if options.should_stop():
            result.stopped = True
            break
        rows, affected = _process_batch(table, policy, selection, after, now, options)
        if not rows:
            break
        after = rows[-1][0]
        result.batches += 1
        result.matched += len(rows)
        result.affected += affected
        room = options.sample_size - len(result.sample_ids)
        result.sample_ids.extend(row[0] for row in rows[: max(room, 0)])
        if not options.dry_run:
            ids = ", ".join(str(row[0]) for row in rows[:LOGGED_IDS_PER_BATCH])
            more = " ..." if len(rows) > LOGGED_IDS_PER_BATCH else ""
            logger.info(
                f"{policy.name}: {policy.action.done} {affected} of {len(rows)} rows in batch {result.batches} "
                f"(ids {ids}{more})"
            )
        if len(rows) < options.batch_size:
            break
    return result


def run_policies(
    table: TaskTable,
    policies: Sequence[Policy],
    now: datetime,
    options: RunOptions,
    timer: Callable[[], float] = time.monotonic,
) -> RunResult:
    """Apply each policy in turn and return what each matched and changed."""
    started = timer()
    run = RunResult(dry_run=options.dry_run, now=now, policies={})
    for policy in policies:
        if options.should_stop():
            run.stopped_early = True
            break
        result = apply_policy(table, policy, now, options)
        run.policies[policy.name] = result
        verb = f"would be {policy.action.done}" if options.dry_run else policy.action.done
        logger.info(
            f"{policy.name}: {result.matched} {policy.status} rows older than {policy.threshold}, "
            f"{result.affected if not options.dry_run else result.matched} {verb}"
        )
    run.stopped_early = run.stopped_early or any(result.stopped for result in run.policies.values())
    run.duration_seconds = timer() - started
    return run
