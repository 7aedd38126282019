"""Which rows a policy matches, read in batches along the index that serves it.

A rule of a policy matches ``status IN (spellings) AND <its task types> AND COALESCE(c1, c2, ...) <
cutoff``, where c1, c2, ... are its age columns (heartbeat_at when configured, started_at,
updated_at, created_at for running tasks; see ``matching``). Read as one query ordered by id, that
condition forces the database either to walk the whole primary key or to sort every match for
every batch. So the matches are read as disjoint segments, each in the order of the recommended
index (status, c1, id), and each batch resumes where the last one stopped:

- for each rule, and each stored spelling v of the status:
  - A: ``status = v AND <types> AND c1 < cutoff1``, ordered by (c1, id): a range of the index;
  - B: ``status = v AND <types> AND c1 IS NULL AND COALESCE(c2, ...) < cutoff2``, ordered by id
    (on PostgreSQL written ``ORDER BY c1, id``, the index's order): the index's null range, filtered
    (only when the policy has more than one age column).

A batch therefore reads about as many index entries as it returns, however large the table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.sql.elements import ColumnElement

from reaper.database.table import TaskTable
from reaper.engine.rows import TaskRow, position_shape
from reaper.engine.sizing import BatchSizer
from reaper.policy.matching import dated_before, datings, type_scope
from reaper.policy.policies import Policy, Rule


@dataclass(frozen=True)
class Segment:
    """A part of a rule's matches that one index range serves, and the order to read it in."""

    rule: Rule
    where: ColumnElement[bool]
    order: tuple[ColumnElement[Any], ...]  # the position a batch resumes after
    # A column NULL on every row of the segment (B's c1) that ORDER BY names before ``order``, as the index
    # does, where the database needs it to read the range in order (``Dialect.orders_null_range_by_column``).
    null_lead: ColumnElement[Any] | None = None

    @property
    def sorting(self) -> tuple[ColumnElement[Any], ...]:
        """The ORDER BY of the segment's reads: the order of the index that serves it."""
        return self.order if self.null_lead is None else (self.null_lead, *self.order)


@dataclass(frozen=True)
class Batch:
    """Rows read in one query, and the rule that matched them.

    A batch deleted along the primary key without reading its ids back holds a sample of them as
    ``rows``: ``count`` says how many there were, and ``id_span`` the stretch of ids they lay in.
    """

    rule: Rule
    rows: Sequence[TaskRow]  # rows as read, or bare keys
    count: int | None = None
    id_span: tuple[Any, Any] | None = None

    @property
    def size(self) -> int:
        """How many rows the batch holds."""
        return len(self.rows) if self.count is None else self.count

    @property
    def ids(self) -> list[Any]:
        """The ids known of the batch: its rows', or the ends of its stretch of ids."""
        return [row.id for row in self.rows] if self.id_span is None else list(self.id_span)


def segments(table: TaskTable, policy: Policy, now: datetime, spellings: Sequence[str]) -> list[Segment]:
    """Return the disjoint segments that together hold every row ``policy`` matches at ``now``."""
    parts = []
    for rule in policy.rules:
        first, *rest = datings(table, policy, rule, now)
        scope = type_scope(table, policy, rule)
        for value in spellings:
            status = and_(table.status == value, scope)
            dated = and_(status, table.before(first.column, first.cutoff))
            # paged on the column as the database compares it (its text on SQLite), and down to the whole
            # key, so that a batch never resumes past a row it did not read
            stored = table.dialect.as_stored(first.column)
            parts.append(Segment(rule, dated, (stored, *table.key)))
            if rest:
                undated_first = and_(status, first.column.is_(None), dated_before(table, rest))
                lead = stored if table.dialect.orders_null_range_by_column else None
                parts.append(Segment(rule, undated_first, table.key, null_lead=lead))
    return parts


def resume_after(order: Sequence[ColumnElement[Any]], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows strictly after ``values`` in ``order``; the leading ``>=`` lets every database seek to it."""
    column, value = order[0], values[0]
    if len(order) == 1:
        after: ColumnElement[bool] = column > value
        return after
    return and_(column >= value, or_(column > value, and_(column == value, resume_after(order[1:], values[1:]))))


def segment_query(
    table: TaskTable,
    policy: Policy,
    segment: Segment,
    after: Sequence[Any] | None,
    size: int,
) -> Select[Any]:
    """Return the SELECT of the next batch of ``segment``: keys and the position reached.

    Its rows have the shape ``rows.position_shape`` gives, the position being the segment's order:
    the SELECT reads only the index.
    """
    shape = position_shape(table, segment.order)
    query = select(*shape.columns).where(segment.where)
    if after is not None:
        query = query.where(resume_after(segment.order, after))
    return query.order_by(*segment.sorting).limit(size)


def batches(
    table: TaskTable,
    policy: Policy,
    now: datetime,
    sizer: BatchSizer,
    pause: Callable[[], bool] = lambda: True,
    rule: Rule | None = None,
) -> Iterator[Batch]:
    """Yield the rows ``policy`` (or only its ``rule``) matches, ``sizer.size`` at a time, each read in
    its own short query along the index that serves the rule (see ``plans``).

    ``pause`` is called after each full batch, before the query that follows it, so that a run
    yields to the application between batches and never waits once the matches run out; when it
    returns false, no further batch is read.
    """
    with table.engine.connect() as conn:
        spellings = table.stored_spellings(conn, policy.status)
    for segment in segments(table, policy, now, spellings):
        if rule is not None and segment.rule is not rule:
            continue
        shape = position_shape(table, segment.order)
        after: Sequence[Any] | None = None
        while True:
            if after is not None and not pause():
                return
            size = sizer.size
            with table.engine.connect() as conn:
                rows = shape.rows(conn.execute(segment_query(table, policy, segment, after, size)))
            if rows:
                yield Batch(segment.rule, rows)
            if len(rows) < size:
                break
            after = rows[-1].position
