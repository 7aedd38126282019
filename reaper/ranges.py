"""Deleting by index range: the fast path of a purge.

A delete batch read as ids and deleted with ``WHERE id IN (...)`` costs a primary-key look-up per
row on top of the delete, and the ids travel to reaper and back. Here each batch is a range of the
segment's index instead: one query finds where the batch ends (the ``size``-th row, read from the
index alone), and one ``DELETE ... WHERE <segment> AND <the rule's whole condition> AND <range>
RETURNING id`` removes it, so the database walks the index once and a row that changed meanwhile
is still left alone. The ids come back for the logs, samples and audit line.

Used when the database has ``DELETE ... RETURNING`` (SQLite, PostgreSQL, MariaDB), the run writes,
and nothing is archived; otherwise, and for a range that a lock conflict or a foreign key refuses,
the rows are read as ids and written by ``writes.write_batch`` (retries, bisection, skips).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement

from reaper.db import is_lock_conflict, refused_by_constraint
from reaper.policies import Action, Policy
from reaper.selection import Batch, Segment, resume_after, segments
from reaper.sizing import BatchSizer
from reaper.table import TaskTable
from reaper.writes import BatchOutcome, WriteContext, write_batch


def deletes_by_range(table: TaskTable, policy: Policy, dry_run: bool, archiving: bool) -> bool:
    """Whether a pass of ``policy`` can delete by index range."""
    return (
        not dry_run and not archiving and policy.actions == {Action.DELETE} and table.engine.dialect.delete_returning
    )


def up_to(order: Sequence[ColumnElement[Any]], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows at or before ``values`` in ``order``; the leading ``<=`` lets every database bound the range."""
    column, value = order[0], values[0]
    if len(order) == 1:
        return column <= value
    return and_(column <= value, or_(column < value, and_(column == value, up_to(order[1:], values[1:]))))


def _range(segment: Segment, after: Sequence[Any] | None, upto: Sequence[Any] | None) -> ColumnElement[bool]:
    bounds = [segment.where]
    if after is not None:
        bounds.append(resume_after(segment.order, after))
    if upto is not None:
        bounds.append(up_to(segment.order, upto))
    return and_(*bounds)


def _end_of_batch(
    conn: Connection, segment: Segment, after: Sequence[Any] | None, size: int
) -> tuple[Any, ...] | None:
    """The position of the ``size``-th row after ``after``, or ``None`` when fewer rows are left."""
    query = select(*segment.order).where(_range(segment, after, None)).order_by(*segment.order)
    found = conn.execute(query.offset(size - 1).limit(1)).first()
    return None if found is None else tuple(found)


def _delete_range(
    conn: Connection, ctx: WriteContext, segment: Segment, after: Sequence[Any] | None, size: int
) -> tuple[Batch, BatchOutcome, tuple[Any, ...] | None]:
    """Find the end of the next range and delete its matching rows, in one transaction on ``conn``.

    When the database refuses the range (a lock conflict, a foreign key), its rows are read as ids
    and handed to ``write_batch``, which retries, bisects and skips one batch at a time.
    """
    table = ctx.table
    try:
        with conn.begin():
            upto = _end_of_batch(conn, segment, after, size)
            where = _range(segment, after, upto)
            ids = conn.execute(delete(table.table).where(where, ctx.selection).returning(table.id)).scalars().all()
    except DBAPIError as exc:
        if not (is_lock_conflict(exc) or refused_by_constraint(exc)):
            raise
        with conn.begin():
            upto = _end_of_batch(conn, segment, after, size)
            where = _range(segment, after, upto)
            rows = conn.execute(select(table.id).where(where, ctx.selection).order_by(table.id)).all()
        return Batch(ctx.rule, rows), write_batch(ctx, rows), upto
    rows = [(task_id,) for task_id in ids]
    return Batch(ctx.rule, rows), BatchOutcome(affected=len(ids), done={"deleted": len(ids)} if ids else {}), upto


def delete_by_ranges(
    table: TaskTable,
    policy: Policy,
    now: datetime,
    sizer: BatchSizer,
    pause: Callable[[], bool],
    contexts: dict[Any, WriteContext],
) -> Iterator[tuple[Batch, BatchOutcome]]:
    """Delete what ``policy`` matches, one index range of at most ``sizer.size`` rows per transaction.

    ``pause`` is called before each range after the first of a segment, as in ``selection.batches``.
    """
    with table.engine.connect() as conn:
        spellings = table.stored_spellings(conn, policy.status)
    for segment in segments(table, policy, now, spellings):
        after: tuple[Any, ...] | None = None
        with table.engine.connect() as conn:  # one session per segment: no pool ping and reset per batch
            while True:
                if after is not None and not pause():
                    return
                started = time.monotonic()
                batch, outcome, upto = _delete_range(conn, contexts[segment.rule], segment, after, sizer.size)
                sizer.observe(len(batch.rows), time.monotonic() - started)
                yield batch, outcome
                if upto is None:
                    break
                after = upto
