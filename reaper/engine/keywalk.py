"""Walking the primary key: how a rule that no index serves reads its matches (see ``plans``).

The table is read range by range of its primary key, each range with the rule's whole condition:
``id >= a AND id < b AND <condition>`` for integer keys; for other keys (UUIDs, strings) the range
ends at the key ``width`` places on, read from the primary key's own index. No statement sorts, and
the whole walk reads the table once, however many rows match and whatever other indexes it has.
An empty range of integer ids is followed by one look-up of the next id there is, so gaps in the
ids (deleted stretches, ids from several sequences) cost a query each, not a read per width.

A range's matches are yielded in batches of the write size (``sizing.BatchSizer``), each written or
archived in a transaction of its own by ``writes.write_batch``; the width of a range follows the
time its read takes, up to ``sizing.MAX_BATCH_SIZE`` ids, so that the reads stay short too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, and_, func, select, true
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from reaper.database.table import TaskTable
from reaper.engine.rows import RowShape, TaskRow, key_shape
from reaper.engine.selection import Batch
from reaper.engine.sizing import BatchSizer
from reaper.policy.matching import rule_condition
from reaper.policy.policies import Policy, Rule


@dataclass(frozen=True)
class KeyWalk:
    """One rule's walk along the primary key: what it reads and how it sizes its reads and writes."""

    table: TaskTable
    policy: Policy
    rule: Rule
    now: datetime

    def shape(self) -> RowShape:
        """The rows read: keys alone (no position: a range is read whole)."""
        return key_shape(self.table)


def integer_keys(table: TaskTable) -> bool:
    """Whether the table's ids are integers, so that a range of them can be computed."""
    return isinstance(table.id.type, Integer)


def key_span(conn: Connection, table: TaskTable) -> tuple[Any, Any] | None:
    """The smallest and largest id of the table (two look-ups in the primary key), or ``None`` when empty.

    Two statements: SQLite reads ``min`` or ``max`` from the key's end only when it is the query's one
    aggregate, and scanned the whole table for both at once (0.13 s at 1 M rows).
    """
    low = conn.execute(select(func.min(table.id))).scalar()
    high = conn.execute(select(func.max(table.id))).scalar()
    return None if low is None or high is None else (low, high)


def next_key(conn: Connection, table: TaskTable, start: int) -> int | None:
    """The smallest id at or after ``start``: where the next range of integer ids begins."""
    following = conn.execute(select(func.min(table.id)).where(table.id >= start)).scalar()
    return None if following is None else int(following)


def _key_after(conn: Connection, table: TaskTable, after: Any, width: int) -> Any:
    """The key ``width`` places after ``after`` in the primary key's order (``None``: fewer are left)."""
    query = select(table.id).order_by(table.id).offset(width - 1).limit(1)
    if after is not None:
        query = query.where(table.id > after)
    return conn.execute(query).scalar()


def _read(conn: Connection, walk: KeyWalk, bounds: ColumnElement[bool]) -> list[TaskRow]:
    condition = rule_condition(walk.table, walk.policy, walk.rule, walk.now)
    shape = walk.shape()
    rows = shape.rows(conn.execute(select(*shape.columns).where(bounds, condition)))
    return sorted(rows, key=lambda row: row.id)  # a range comes back in any order: logs and samples read better


class _Ranges:
    """The ranges of a primary-key walk, one after the other, each as wide as the caller asks.

    Each look-up takes a connection of its own for its moment: none is held while batches are
    written, so a server that goes away between two ranges costs no connection left to clean up.
    """

    def __init__(self, table: TaskTable) -> None:
        self.table = table
        self.integers = integer_keys(table)
        span = None
        if self.integers:
            with table.engine.connect() as conn:
                span = key_span(conn, table)
        self.start: Any = None if span is None else int(span[0])
        self.high: int | None = None if span is None else int(span[1])
        self.after: Any = None  # keys that are not integers: the end of the last range
        self.done = self.integers and span is None

    def next(self, conn: Connection, width: int, previous_rows: int | None) -> ColumnElement[bool] | None:
        """The bounds of the next range of ``width`` keys; ``None`` when the walk is over."""
        if self.done:
            return None
        if self.integers:
            return self._next_integers(conn, width, previous_rows)
        end = _key_after(conn, self.table, self.after, width)
        lower = true() if self.after is None else self.table.id > self.after
        self.after, self.done = end, end is None
        return lower if end is None else and_(lower, self.table.id <= end)

    def _next_integers(self, conn: Connection, width: int, previous_rows: int | None) -> ColumnElement[bool] | None:
        assert self.high is not None
        if previous_rows == 0 and self.start is not None:  # an empty range: skip the gap that may follow
            self.start = next_key(conn, self.table, self.start)
        if self.start is None or self.start > self.high:
            self.done = True
            return None
        low, self.start = self.start, self.start + width
        return and_(self.table.id >= low, self.table.id < self.start)


def _next_rows(walk: KeyWalk, ranges: _Ranges, reads: BatchSizer, previous_rows: int | None) -> list[TaskRow] | None:
    """Read the next range's matches (``None``: the walk is over), and size the range after it."""
    with walk.table.engine.connect() as conn:
        bounds = ranges.next(conn, reads.size, previous_rows)
        if bounds is None:
            return None
        started = reads.timer()
        rows = _read(conn, walk, bounds)
    reads.observe(reads.size, reads.timer() - started, full=True)  # a read's time follows its width
    return rows


def key_batches(
    walk: KeyWalk, writes: BatchSizer, reads: BatchSizer, pause: Callable[[], bool] = lambda: True
) -> Iterator[Batch]:
    """Yield the rule's matches range by range of the primary key, ``writes.size`` rows at a time.

    ``pause`` is called before every batch but the first, as in ``selection.batches``; when it
    returns false, the walk stops.
    """
    first, previous_rows = True, None
    ranges = _Ranges(walk.table)
    while (rows := _next_rows(walk, ranges, reads, previous_rows)) is not None:
        previous_rows, done = len(rows), 0
        while done < len(rows):
            if not first and not pause():
                return
            first, size = False, writes.size
            yield Batch(walk.rule, rows[done : done + size])
            done += size
