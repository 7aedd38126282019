"""Writes under pressure: rows refused by a foreign key, rows locked by the application."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Column, ForeignKey, Integer, Table, insert, select, text
from sqlalchemy.engine import Engine, make_url

from helpers import NOW, Tasks, ago, settings_for
from reaper.db import SessionLimits, create_db_engine
from reaper.policies import standard_policies
from reaper.reap import RunOptions, RunResult, run_policies
from reaper.table import open_table


@pytest.fixture
def reaper_engine(tasks: Tasks, database_url: str) -> Iterator[Engine]:
    """The engine the reaper itself would use on the task table: short lock waits."""
    engine = create_db_engine(make_url(database_url), SessionLimits(lock_timeout_seconds=1, statement_timeout_seconds=30))
    yield engine
    engine.dispose()


def run(engine: Engine, database_url: str, tasks: Tasks, policy: int, **options: Any) -> RunResult:
    settings = settings_for(database_url, tasks.shape)
    policies = [standard_policies(settings)[policy]]
    return run_policies(open_table(engine, settings), policies, NOW, RunOptions(sleep=lambda _: None, **options))


def test_rows_refused_by_a_foreign_key_are_skipped_named_and_the_rest_deleted(
    tasks: Tasks, database_url: str, reaper_engine: Engine
) -> None:
    ids = [tasks.add("failure", finished_at=ago(days=10)) for _ in range(10)]
    outputs = Table(
        "task_outputs",
        tasks.table.metadata,
        Column("id", Integer, primary_key=True),
        Column("task_id", Integer, ForeignKey(tasks.table.c.id, name="fk_outputs_task"), nullable=False),
    )
    outputs.create(tasks.engine)
    with tasks.engine.begin() as conn:
        conn.execute(insert(outputs), [{"task_id": ids[2]}, {"task_id": ids[6]}])
    result = run(reaper_engine, database_url, tasks, 2, batch_size=4).policies["failure_retention"]
    assert (result.matched, result.affected, result.skipped) == (10, 8, 2)
    (reason,) = result.skip_reasons
    expected = "FOREIGN KEY" if database_url.startswith("sqlite") else "fk_outputs_task"
    assert expected in reason and result.skip_reasons[reason] == 2
    with tasks.engine.connect() as conn:
        left = conn.execute(select(tasks.table.c.id).order_by(tasks.table.c.id)).scalars().all()
    assert left == [ids[2], ids[6]]


def test_a_second_run_does_not_loop_on_refused_rows(tasks: Tasks, database_url: str, reaper_engine: Engine) -> None:
    kept = tasks.add("failure", finished_at=ago(days=10))
    child = Table(
        "children",
        tasks.table.metadata,
        Column("id", Integer, primary_key=True),
        Column("task_id", Integer, ForeignKey(tasks.table.c.id, name="fk_children_task")),
    )
    child.create(tasks.engine)
    with tasks.engine.begin() as conn:
        conn.execute(insert(child).values(task_id=kept))
    for _ in range(2):
        result = run(reaper_engine, database_url, tasks, 2, batch_size=1).policies["failure_retention"]
        assert (result.matched, result.affected, result.skipped, result.batches) == (1, 0, 1, 1)


def hold_row_lock(tasks: Tasks, database_url: str, task_id: Any) -> Any:
    """Open a transaction that locks one row (the whole database on SQLite), as a slow worker would."""
    holder = create_db_engine(make_url(database_url))
    conn = holder.connect()
    if database_url.startswith("sqlite"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        id_column = tasks.table.c.id
        conn.execute(select(id_column).where(id_column == task_id).with_for_update())
    return holder, conn


def test_a_locked_row_is_retried_then_skipped_and_the_run_goes_on(
    tasks: Tasks, database_url: str, reaper_engine: Engine
) -> None:
    zombies = [tasks.add("running", started_at=ago(hours=30)) for _ in range(3)]
    holder, conn = hold_row_lock(tasks, database_url, zombies[1])
    try:
        result = run(reaper_engine, database_url, tasks, 0, batch_size=1, max_retries=1).policies["running_timeout"]
    finally:
        conn.rollback()
        conn.close()
        holder.dispose()
    assert result.retries >= 1 and "lock conflict" in result.skip_reasons
    if database_url.startswith("sqlite"):  # SQLite locks the whole database, so every batch waits
        assert (result.affected, result.skipped) == (0, 3)
    else:
        assert (result.affected, result.skipped) == (2, 1)
        assert [tasks.status_of(task) for task in zombies] == ["failure", "running", "failure"]


def test_sessions_carry_the_lock_and_statement_limits(database_url: str, reaper_engine: Engine) -> None:
    backend = make_url(database_url).get_backend_name()
    with reaper_engine.connect() as conn:
        if backend == "mysql":
            assert conn.execute(text("SELECT @@innodb_lock_wait_timeout")).scalar() == 1
            assert float(conn.execute(text("SELECT @@max_statement_time")).scalar()) == 30
            assert conn.execute(text("SELECT @@time_zone")).scalar() == "+00:00"
        elif backend == "postgresql":
            assert conn.execute(text("SHOW lock_timeout")).scalar() == "1s"
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "30s"
        else:
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
