"""One reaper at a time per table: the database's own lock, held only for the run.

Each database holds it its own way (its dialect's ``run_lock``): MySQL and MariaDB with ``GET_LOCK``
and PostgreSQL with a session advisory lock, each on a connection of its own kept open for the run,
so that if the process dies the server drops the connection and the lock with it; SQLite, a file on
one machine, with an exclusive ``flock`` on a file beside it (SQLite's own write lock would block the
application's writers for the whole run). Another reaper that finds the lock taken learns who holds
it and skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Engine

from reaper.database.dialects import RunLock, dialect_of


@contextmanager
def exclusive_run(engine: Engine, table: str) -> Iterator[RunLock]:
    """Hold the table's reaper lock for the body; raise ``LockHeld`` naming the holder if taken."""
    with dialect_of(engine).run_lock(engine, table) as lock:
        yield lock
