"""Active rows that no column dates: given the moment reaper first saw them, so that a timeout can judge them.

Celery's SQLAlchemy result backend (since 5.3) writes ``date_done`` only for a final state and
clears it for every other, so a ``STARTED`` row carries no time at all, and a task whose worker
died would stay ``STARTED`` forever, its age unknown. For such a table (``Preset.dates_undated``)
a real run first sets the empty age column of those rows to now: from then on the row is at least
that old, and the timeout counts from there. The write keeps the whole condition (status, column
still empty), so a row the application wrote in between is left alone; an application that writes
the row again (a retry, a redelivered task) empties the column again, and the count starts over.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from loguru import logger
from sqlalchemy import and_, select, update
from sqlalchemy.sql.elements import ColumnElement

from reaper.database.connection import database_errors
from reaper.database.table import ACTIVE_STATUSES, TaskTable
from reaper.errors import LockConflict


def _undated(table: TaskTable, role: str) -> ColumnElement[bool]:
    return and_(table.status_is(role), *(column.is_(None) for column in table.age_columns(role)))


def _date_batch(table: TaskTable, role: str, ids: Sequence[Any], now: datetime) -> int:
    column = table.age_columns(role)[0]
    stamp = {column: table.to_db(now, column)}
    query = update(table.table).where(table.id.in_(ids), _undated(table, role)).values(stamp)
    with table.engine.begin() as conn:
        return int(conn.execute(query).rowcount)


def date_role(table: TaskTable, role: str, now: datetime, batch_size: int) -> int:
    """Set the first age column of the rows of status ``role`` that have no time to ``now``; return how many."""
    dated, last = 0, None
    while True:
        query = select(table.id).where(_undated(table, role)).order_by(table.id).limit(batch_size)
        if last is not None:
            query = query.where(table.id > last)
        with table.engine.connect() as conn:
            ids = list(conn.execute(query).scalars())
        if not ids:
            return dated
        try:
            with database_errors():
                dated += _date_batch(table, role, ids, now)
        except LockConflict:
            logger.warning(f"dating {role} rows that have no time: lock conflict, the rest waits for the next run")
            return dated
        last = ids[-1]


def date_undated(table: TaskTable, statuses: Sequence[str], now: datetime, batch_size: int) -> dict[str, int]:
    """Date the undated rows of the active ``statuses`` when the table needs it; return the count by status."""
    if not table.dates_undated:
        return {}
    counts = {}
    for role in dict.fromkeys(role for role in statuses if role in ACTIVE_STATUSES):
        count = date_role(table, role, now, batch_size)
        if count:
            column = table.age_columns(role)[0].name
            logger.info(
                f"{count} {role} rows had no time ({column} empty): dated {now:%Y-%m-%d %H:%M:%S} UTC, "
                "the moment reaper first saw them; their timeout counts from it"
            )
        counts[role] = count
    return counts
