"""Each database's dialect, on the real database: whether it deletes with RETURNING, which dialect a URL
gets, and what a database without one is refused."""

from __future__ import annotations

import pytest
from sqlalchemy import delete
from sqlalchemy.engine import make_url

from helpers import Tasks, ago
from reaper.database.connection import create_db_engine
from reaper.database.dialects import dialect_of
from reaper.database.lock import exclusive_run
from reaper.errors import ConfigError


def test_returning_is_reported_as_the_database_runs_it(tasks: Tasks, database_url: str) -> None:
    task = tasks.add("success", finished_at=ago(days=40))
    engine = create_db_engine(make_url(database_url))  # no connection yet: the server is not known
    try:
        reported = dialect_of(engine).deletes_returning(engine)
        with engine.begin() as conn:
            deleted = conn.execute(delete(tasks.table).where(tasks.table.c.id == task).returning(tasks.table.c.id))
            assert reported and deleted.scalars().all() == [task]  # SQLite, MariaDB and PostgreSQL all have it
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("mysql+pymysql://app@db/tasks", "mysql"),
        ("mariadb+pymysql://app@db/tasks", "mysql"),
        ("postgresql+psycopg://app@db/tasks", "postgresql"),
        ("postgresql://app@db/tasks", "postgresql"),
        ("sqlite:///tasks.sqlite3", "sqlite"),
        ("oracle://app@db/tasks", "oracle"),
    ],
)
def test_a_url_gets_the_dialect_of_its_database_whatever_the_driver(url: str, name: str) -> None:
    assert dialect_of(make_url(url)).name == name == dialect_of(make_url(url).get_backend_name()).name


def test_a_database_without_a_dialect_gets_no_run_lock_and_no_load_limits() -> None:
    engine = create_db_engine(make_url("sqlite://"))
    unknown = dialect_of("oracle")
    try:
        with pytest.raises(ConfigError, match="not oracle"), unknown.run_lock(engine, "processing_tasks"):
            pass
    finally:
        engine.dispose()
    with pytest.raises(ValueError, match="not oracle"):
        unknown.check_load_names(["Threads_running"])


def test_an_in_memory_sqlite_database_needs_no_run_lock() -> None:
    engine = create_db_engine(make_url("sqlite://"))
    try:
        with exclusive_run(engine, "processing_tasks") as lock:
            assert lock.held()
    finally:
        engine.dispose()
