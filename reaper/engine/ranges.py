"""Writing by range: the fast path of a purge, and of failing what no index finds.

A batch read as ids and written with ``WHERE id IN (...)`` costs a primary-key look-up per row on
top of the write, and the ids travel to reaper and back. Here each batch is a range, deleted (or
set to failure) with the rule's whole condition re-checked by the database, so a row that changed
meanwhile is still left alone:

- a rule that no index serves (see ``plans``) walks the whole primary key in stretches of ids,
  ``DELETE ... WHERE id >= a AND id < b AND <condition>`` (for a fail, ``UPDATE ... SET status =
  'failure', <the reason, the moment> WHERE`` the same): one pass over the table, as the bare
  statement's scan. Where the database reads a range of a table's pages (PostgreSQL 14: ``ctid >=
  '(a,0)' AND ctid < '(b,0)'``, a TID Range Scan), the matches are sparse and batches may grow, it
  walks the pages instead (see ``spans.walk_span``):
  a range of ids made PostgreSQL fetch each row through the primary key (a stretch of 100,000 rows:
  44 ms by ids, 31 ms by pages). The walk covers the pages the table had when it began; a row moved
  meanwhile to a page already walked is the next run's;
- of the rules an index serves, one whose matches fill at least the dialect's ``dense_share`` of their
  span of ids is walked along the primary key the same way, between its first and last match; where
  the planner expects twice that share of a large table to match (``spans.planned_dense``), between the
  table's first and last id, without counting the matches first;
- the others along their index segments: one query reads where the batch ends (the ``size``-th
  row, from the index alone), and one ``DELETE ... WHERE <segment> AND <range> AND <condition>
  RETURNING id`` removes it; the ids feed the logs, samples and audit line. On PostgreSQL the DELETE
  sits in a WITH clause whose SELECT sums it up (how many rows, their span of ids, the smallest ids
  a run samples): the ids of a large batch are not read back one by one.

Deletes by range when the run archives nothing, on integer ids for the walks along the primary key
and on a database with ``DELETE ... RETURNING`` (SQLite, PostgreSQL, MariaDB) along an index; fails
by range on the walks along the primary key (integer ids); otherwise (a requeue, a fail along an
index), and for a range that a lock conflict or a foreign key refuses, the rows are read as ids
and written by ``writes.write_batch`` (retries, bisection, skips).

The width of a stretch follows the time its write takes (``sizing.BatchSizer``), whatever it
matched: a stretch of few matches costs its scan, and a width held down by a sparse stretch made a
walk of 3 % scattered matches commit every thirty rows. A dense stretch after a wide sparse one can
take longer than ``--batch-time`` once, bounded by the ceiling of ``sizing.MAX_BATCH_SIZE`` ids (or
``--batch-size`` set by hand); the next shrinks in proportion (at least by half).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import ReturningDelete, ReturningUpdate
from sqlalchemy.sql.elements import ColumnElement

from reaper.database.connection import database_errors
from reaper.database.table import TaskTable
from reaper.engine.keywalk import integer_keys, next_key
from reaper.engine.plans import Plan
from reaper.engine.rows import RowShape, TaskRow, key_shape
from reaper.engine.selection import Batch, Segment, resume_after, segments
from reaper.engine.sizing import MAX_ID_LIST, BatchSizer
from reaper.engine.spans import dense_span, in_pages, walk_span
from reaper.engine.writes import BatchOutcome, WriteContext, write_batch, write_where, writing_where
from reaper.errors import ConstraintRefused, LockConflict
from reaper.policy.policies import Action, Policy, Rule

# How the database refuses a range in a way ``write_batch`` handles row by row.
REFUSED = (LockConflict, ConstraintRefused)

ReturningWrite = ReturningDelete[Any] | ReturningUpdate[Any]


def writes_by_range(table: TaskTable, policy: Policy, plan: Plan, archiving: bool) -> bool:
    """Whether a real pass writes ``plan``'s rule by range: a pure delete, nothing archived, with either
    integer ids for a walk along the primary key or ``DELETE ... RETURNING`` for an index's ranges;
    or a pure fail that no index serves, on integer ids (a requeue reads its rows: two statements
    write them, by the attempts bound)."""
    if policy.actions == {Action.FAIL}:
        return plan.index is None and integer_keys(table)
    if archiving or policy.actions != {Action.DELETE}:
        return False
    if plan.index is None:
        return integer_keys(table)
    return table.dialect.deletes_returning(table.engine)


def up_to(order: Sequence[ColumnElement[Any]], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows at or before ``values`` in ``order``; the leading ``<=`` lets every database bound the range."""
    column, value = order[0], values[0]
    if len(order) == 1:
        until: ColumnElement[bool] = column <= value
        return until
    return and_(column <= value, or_(column < value, and_(column == value, up_to(order[1:], values[1:]))))


def _range(segment: Segment, after: Sequence[Any] | None, upto: Sequence[Any] | None) -> ColumnElement[bool]:
    """The rows of ``segment`` after ``after`` and up to ``upto``, the batch's own bounds first: SQLite
    bounds an index scan by the first term it meets on each side of a column, and behind the segment's
    text bound (``Dialect.before``) a DELETE read every later match up to it (3 rows among 800,000:
    0.46 s, 0.001 s with its own bounds first)."""
    bounds = []
    if after is not None:
        bounds.append(resume_after(segment.order, after))
    if upto is not None:
        bounds.append(up_to(segment.order, upto))
    return and_(*bounds, segment.where)


def _end_of_batch(
    conn: Connection, segment: Segment, after: Sequence[Any] | None, size: int
) -> tuple[Any, ...] | None:
    """The position of the ``size``-th row after ``after``, or ``None`` when fewer rows are left."""
    query = select(*segment.order).where(_range(segment, after, None)).order_by(*segment.sorting)
    end = conn.execute(query.offset(size - 1).limit(1)).first()
    return None if end is None else tuple(end)


def _done(ctx: WriteContext, count: int) -> BatchOutcome:
    return BatchOutcome(affected=count, done=Counter({ctx.rule.action.done: count} if count else {}))


def _write_as_ids(
    conn: Connection, ctx: WriteContext, bounds: Callable[[], ColumnElement[bool]]
) -> tuple[Batch, BatchOutcome]:
    """Read a refused range's matching rows as ids (``bounds()`` runs inside the read's transaction);
    ``write_batch`` retries, bisects and skips them."""
    with conn.begin():
        key = ctx.table.key
        rows = key_shape(ctx.table).rows(conn.execute(select(*key).where(bounds(), ctx.selection).order_by(*key)))
    outcome = BatchOutcome()
    for start in range(0, len(rows), MAX_ID_LIST):  # a grown range can hold more ids than one statement binds
        outcome.add(write_batch(ctx, rows[start : start + MAX_ID_LIST]))
    return Batch(ctx.rule, rows), outcome


def _write_range(
    conn: Connection, ctx: WriteContext, bounds: Callable[[], ColumnElement[bool]], sample: int
) -> tuple[Batch, BatchOutcome]:
    """Delete (or fail) the rows within ``bounds()`` that match the rule, in one transaction on ``conn``;
    where the database sums up a write (``_summarised``), the batch holds the ``sample`` smallest ids.

    ``bounds`` runs inside the transaction (it may read where the range ends).
    """
    table, shape = ctx.table, key_shape(ctx.table)
    # one integer id: its span is a min and a max (PostgreSQL has neither for a UUID)
    summarised = table.dialect.summarises_writes and len(table.key) == 1 and integer_keys(table)
    try:
        with database_errors(), conn.begin():
            statement = writing_where(conn, ctx, bounds()).returning(*shape.columns)
            if summarised:
                batch = _summarised(conn, ctx.rule, statement, shape, sample)
            else:
                batch = Batch(ctx.rule, shape.rows(conn.execute(statement)))
    except REFUSED:
        return _write_as_ids(conn, ctx, bounds)
    return batch, _done(ctx, batch.size)


def _summarised(conn: Connection, rule: Rule, statement: ReturningWrite, shape: RowShape, sample: int) -> Batch:
    """Run ``statement`` (a DELETE or UPDATE returning the id alone, as ``shape`` reads it) in a WITH clause
    and read back what it wrote: how many rows, the span of their ids, and the ``sample`` smallest ids
    (each row of the answer is one of them, with the totals)."""
    written = statement.cte("gone").c[0]
    if not sample:  # the totals alone: an aggregate as the rows come, no window over them all
        count, low, high = conn.execute(select(func.count(), func.min(written), func.max(written))).one()
        return Batch(rule, [], count=int(count), id_span=(low, high) if count else None)
    totals = (func.count().over(), func.min(written).over(), func.max(written).over())
    smallest = conn.execute(select(written, *totals).order_by(written).limit(sample)).all()
    if not smallest:
        return Batch(rule, [], count=0)
    _, count, low, high = smallest[0]
    sampled = [TaskRow((row[0],), shape) for row in smallest]
    return Batch(rule, sampled, count=int(count), id_span=(low, high))


def _write_stretch(
    conn: Connection, ctx: WriteContext, start: int, stop: int, last: int, sample: int
) -> tuple[Batch, BatchOutcome]:
    """Delete or fail the matching rows with ``start <= id < stop``, counted, not read back (``last``: the
    highest id that matched when the walk began, to report the stretch's true end). While the run's
    sample of ``sample`` ids is not full, the stretch's matching ids are read first and the smallest
    kept.

    ``RETURNING id`` cost MariaDB a third of its purge rate here (bench: 54 k against 86 k rows/s),
    and the ids are known to lie in the stretch. The sample read has no ``ORDER BY id LIMIT``: where
    few rows match, MariaDB and PostgreSQL found them along a status index and sorted them. It reads
    the whole stretch's matches instead, the first stretches of a walk: the first is
    ``--batch-size`` ids wide, and a later one at most the width ceiling.
    """
    table, shape = ctx.table, key_shape(ctx.table)
    bounds = and_(table.id >= start, table.id < stop)
    try:
        with database_errors(), conn.begin():
            matching = shape.rows(conn.execute(select(*shape.columns).where(bounds, ctx.selection))) if sample else []
            sampled = sorted(matching, key=lambda row: row.id)[:sample]
            # a sample read that found nothing has scanned the stretch already: no match to delete there
            # (a row that comes to match meanwhile is the next run's)
            empty = sample and not sampled
            written = 0 if empty else write_where(conn, ctx, bounds)
    except REFUSED:
        return _write_as_ids(conn, ctx, lambda: bounds)
    first = sampled[0].id if sampled else start  # the sample's first id is the stretch's first match
    return Batch(ctx.rule, sampled, count=written, id_span=(first, min(stop - 1, last))), _done(ctx, written)


def _by_ids(
    conn: Connection,
    ctx: WriteContext,
    span: tuple[int, int],
    sizer: BatchSizer,
    pause: Callable[[], bool],
    sample: int,
) -> Iterator[tuple[Batch, BatchOutcome] | None]:
    """Walk the primary key in steps of ``sizer.size`` ids; yield ``None`` when ``pause`` says stop."""
    start: int | None = span[0]
    high = span[1]
    sampled, wrote = 0, False
    while start is not None and start <= high:
        # The pause (--sleep, the stop checks, the throttle) follows a stretch that deleted rows: a walk
        # along the whole primary key meets many stretches with nothing to delete, and would sleep in each.
        if wrote and not pause():
            yield None
            return
        width, started = sizer.size, sizer.timer()
        batch, outcome = _write_stretch(conn, ctx, start, start + width, high, max(sample - sampled, 0))
        sampled, wrote = sampled + len(batch.rows), batch.size > 0
        sizer.observe(width, sizer.timer() - started, full=True)  # a stretch's time follows its width
        yield batch, outcome
        start += width
        if not wrote:  # nothing matched here: the next stretch starts at the next id there is (gaps in the ids)
            start = next_key(conn, ctx.table, start)
            conn.rollback()


def _by_pages(
    conn: Connection, ctx: WriteContext, pages: int, sizer: BatchSizer, pause: Callable[[], bool], sample: int
) -> Iterator[tuple[Batch, BatchOutcome] | None]:
    """Walk the table's first ``pages`` pages, ``sizer.size`` pages a stretch; yield ``None`` when ``pause``
    says stop. Each stretch is written in a WITH clause that sums it up (``_summarised``)."""
    start, sampled, wrote = 0, 0, False
    while start < pages:
        if wrote and not pause():  # as in _by_ids: only after a stretch that wrote rows
            yield None
            return
        width, started = sizer.size, sizer.timer()
        bounds = partial(ctx.table.dialect.within_pages, start, start + width)
        batch, outcome = _write_range(conn, ctx, bounds, max(sample - sampled, 0))
        sampled, wrote = sampled + len(batch.rows), batch.size > 0
        sizer.observe(width, sizer.timer() - started, full=True)  # a stretch's time follows its width
        yield batch, outcome
        start += width


def _by_index(
    conn: Connection, ctx: WriteContext, segment: Segment, sizer: BatchSizer, pause: Callable[[], bool], sample: int
) -> Iterator[tuple[Batch, BatchOutcome] | None]:
    """Walk one segment's index range by range; yield ``None`` when ``pause`` says stop."""
    after: tuple[Any, ...] | None = None
    while True:
        if after is not None and not pause():
            yield None
            return
        size, started, ends = sizer.size, sizer.timer(), []

        # _delete_where calls bounds() before this iteration ends, so the loop's current values are meant.
        def bounds() -> ColumnElement[bool]:
            ends.append(_end_of_batch(conn, segment, after, size))  # noqa: B023 -- called in this iteration
            return _range(segment, after, ends[-1])  # noqa: B023 -- called in this iteration

        batch, outcome = _write_range(conn, ctx, bounds, sample)
        sizer.observe(batch.size, sizer.timer() - started)
        yield batch, outcome
        if ends[-1] is None:
            return
        after = ends[-1]


def write_by_ranges(
    table: TaskTable,
    rule: Rule,
    plan: Plan,
    sizer: BatchSizer,
    pause: Callable[[], bool],
    ctx: WriteContext,
    sample: int = 0,
) -> Iterator[tuple[Batch, BatchOutcome]]:
    """Delete what ``rule`` matches, at most ``sizer.size`` rows (or ids) per transaction: along the
    primary key where no index serves the rule (``plan``), else along the index.

    A rule whose matches are dense in the primary key is walked along it between its first and last
    match (sequential reads, as a bare DELETE's table scan); the others along their index segments.
    ``pause`` is called before each range but the first of a walk, as in ``selection.batches``; when
    it says stop, so does this.
    """
    with table.engine.connect() as conn:  # one session per rule: no pool ping and reset per batch
        isolation = table.dialect.range_isolation(conn)
        if isolation is not None:
            conn.execution_options(isolation_level=isolation)
        if plan.index is None:
            span, pages = walk_span(conn, table, sizer, plan.found)
            if span is None:
                walks = []
            elif pages is None:
                walks = [_by_ids(conn, ctx, span, sizer, pause, sample)]
            else:
                walks = [_by_pages(conn, ctx, pages, in_pages(sizer, span, pages), pause, sample)]
        else:
            spellings = table.stored_spellings(conn, ctx.policy.status)
            conn.rollback()
            own = [segment for segment in segments(table, ctx.policy, ctx.now, spellings) if segment.rule is rule]
            dense = dense_span(conn, table, own)
            walks = [_by_ids(conn, ctx, dense, sizer, pause, sample)] if dense else [
                _by_index(conn, ctx, segment, sizer, pause, sample) for segment in own
            ]
        for walk in walks:
            sizer.restart()  # a width in ids is no row count, and each segment's rows cost their own
            for step in walk:
                if step is None:
                    return
                yield step
