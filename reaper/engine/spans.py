"""Where a walk by range goes: the span of ids it covers, and whether by ids or by the table's pages.

``ranges`` walks the primary key for a rule that no index serves, and for one an index serves whose
matches are dense in the primary key; this module decides which, and over what span:

- ``dense_span``: of the rules an index serves, one whose matches fill at least the dialect's
  ``dense_share`` of their span of ids (counted along the index), or, where the planner expects twice
  that share of a large table to match (``planned_dense``), the table's whole span without a count;
- ``walk_span``: for a rule no index serves, the table's span, and its pages where the database reads
  a range of them and the matches, as the run's opening count found them, are sparse; ``in_pages``
  turns a batch sizer's sizes in ids into pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy import func, literal, select
from sqlalchemy.engine import Connection

from reaper.database.table import TaskTable
from reaper.engine.keywalk import integer_keys, key_span
from reaper.engine.plans import RuleCount
from reaper.engine.selection import Segment
from reaper.engine.sizing import BatchSizer

# Matches per id under which a walk of the primary key counts as sparse, and goes by pages where the
# database reads a range of them (``walk_span``). Not the dialect's ``dense_share``, which decides
# whether a rule an index serves walks the primary key at all.
PAGE_WALK_SHARE = 0.25

# Where the planner's estimate stands in for the count of a rule's matches along its index: a table this
# large (the count of 800,000 index entries took 0.14 s at 1 M rows, the estimate a few milliseconds) and
# an estimate twice the dialect's dense share, so that one off by some cannot make sparse matches walk the
# whole table. Statistics older than a purge cost one walk of the table, as a rule no index serves.
PLANNED_TABLE_ROWS = 100_000
PLANNED_DENSE_FACTOR = 2


def planned_dense(conn: Connection, table: TaskTable, walks: Sequence[Segment]) -> tuple[int, int] | None:
    """The table's span of ids, where the planner expects at least ``PLANNED_DENSE_FACTOR`` times the
    dialect's dense share of a table of ``PLANNED_TABLE_ROWS`` or more to match the rule
    (``Dialect.planned_rows``): its matches are dense without counting them."""
    every_row = select(literal(1)).select_from(table.table)
    rows = table.dialect.planned_rows(conn, every_row)
    span = None
    if rows is not None and rows >= PLANNED_TABLE_ROWS:
        matches = sum(table.dialect.planned_rows(conn, every_row.where(segment.where)) or 0.0 for segment in walks)
        span = key_span(conn, table) if matches >= PLANNED_DENSE_FACTOR * table.dialect.dense_share * rows else None
    conn.rollback()
    return None if span is None else (int(span[0]), int(span[1]))


def dense_span(conn: Connection, table: TaskTable, walks: Sequence[Segment]) -> tuple[int, int] | None:
    """The id span of the rule's matches, when they fill at least the dialect's ``dense_share`` of it
    (integer ids); the table's span where the planner's estimate says so first (``planned_dense``).

    Counted segment by segment, each an index range read from the index alone: the rule's whole
    condition, an OR across its age columns, would make MariaDB scan the table (0.9 s at 1 M rows).
    """
    if not integer_keys(table) or not walks:
        return None
    planned = planned_dense(conn, table, walks)
    if planned is not None:
        return planned
    spans = [
        conn.execute(select(func.min(table.id), func.max(table.id), func.count()).where(segment.where)).one()
        for segment in walks
    ]
    conn.rollback()  # end the reads' transaction before the deletes begin theirs
    matching = [(int(low), int(high), int(count)) for low, high, count in spans if count]
    if not matching:
        return None
    low, high = min(span[0] for span in matching), max(span[1] for span in matching)
    dense = sum(span[2] for span in matching) >= table.dialect.dense_share * (high - low + 1)
    return (low, high) if dense else None


def walk_span(
    conn: Connection, table: TaskTable, sizer: BatchSizer, found: RuleCount | None
) -> tuple[tuple[int, int] | None, int | None]:
    """The table's span of ids (``None``: empty), and its pages where the walk goes along them.

    Pages where the database reads a range of them (``Dialect.table_pages``), the rule's matches are
    sparse and batches may grow. Where few rows of a stretch match, reading it is the walk's cost, and
    by pages PostgreSQL reads no key; where most match, writing them is, and reading back their ids
    for the log and the audit cost more than the key (80 % of 1 M rows: 0.50-0.55x of the bare DELETE
    by pages, 0.64-0.66x by ids). A batch size set by hand is a limit (``sizing``) that a stretch of
    whole pages could pass: a page holds many rows.
    """
    span = key_span(conn, table)
    if span is None:
        conn.rollback()
        return None, None
    low, high = int(span[0]), int(span[1])
    sparse = found is not None and found.matched < PAGE_WALK_SHARE * (high - low + 1)
    grows = sizer.most > sizer.first
    pages = table.dialect.table_pages(conn, table.table) if sparse and grows else None
    conn.rollback()
    return (low, high), pages or None


def in_pages(sizer: BatchSizer, span: tuple[int, int], pages: int) -> BatchSizer:
    """``sizer``'s sizes in pages: as many ids as the table holds per page (fewer rows where ids have gaps)."""
    per_page = max((span[1] - span[0] + 1) / pages, 1.0)
    return replace(sizer, first=max(1, int(sizer.first / per_page)), ceiling=max(1, int(sizer.most / per_page)))
