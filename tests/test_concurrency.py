"""Workers finish tasks while the reaper fails zombies: not one finished task may end up failure."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
from sqlalchemy import create_engine, insert, select, update

from helpers import NOW, SERVER_BACKENDS, Tasks, ago, settings_for
from reaper.database.connection import SessionLimits, create_db_engine
from reaper.database.table import open_table
from reaper.engine.reap import RunOptions, run_policies
from reaper.policy.policies import standard_policies
from reaper.results import RunResult

ZOMBIES = 600
WORKERS = 4
FINISHED_PER_WORKER = 100


def finish_tasks(database_url: str, tasks: Tasks, ids: list[Any], start: threading.Barrier, done: list[Any]) -> None:
    """A worker: mark each of ``ids`` success, as an application does when a job completes."""
    engine = create_engine(database_url)
    status, completed = tasks.table.c.status, tasks.table.c.completed_at
    try:
        start.wait(timeout=30)
        for task_id in ids:
            with engine.begin() as conn:
                conn.execute(
                    update(tasks.table)
                    .where(tasks.table.c.id == task_id)
                    .values({status: "success", completed: NOW.replace(tzinfo=None)})
                )
            done.append(task_id)
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)
def test_tasks_finished_while_the_reaper_runs_stay_finished(tasks: Tasks, database_url: str) -> None:
    with tasks.engine.begin() as conn:
        conn.execute(
            insert(tasks.table),
            [{"status": "running", "task_type": "download", "created_at": ago(hours=31).replace(tzinfo=None),
              "started_at": ago(hours=30).replace(tzinfo=None)} for _ in range(ZOMBIES)],
        )
        ids = list(conn.execute(select(tasks.table.c.id)).scalars())
    random.Random(7).shuffle(ids)
    shares = [ids[n * FINISHED_PER_WORKER : (n + 1) * FINISHED_PER_WORKER] for n in range(WORKERS)]
    start = threading.Barrier(WORKERS + 1)
    finished: list[Any] = []
    workers = [
        threading.Thread(target=finish_tasks, args=(database_url, tasks, share, start, finished)) for share in shares
    ]
    for worker in workers:
        worker.start()
    settings = settings_for(database_url, batch_size=10)
    engine = create_db_engine(settings.url, SessionLimits(lock_timeout_seconds=5))
    try:
        table = open_table(engine, settings)
        start.wait(timeout=30)
        run: RunResult = run_policies(table, standard_policies(settings)[:1], NOW, RunOptions(batch_size=10))
    finally:
        engine.dispose()
    for worker in workers:
        worker.join(timeout=120)
    assert len(finished) == WORKERS * FINISHED_PER_WORKER
    statuses = {task_id: tasks.status_of(task_id) for task_id in ids}
    assert [task_id for task_id in finished if statuses[task_id] != "success"] == []
    unfinished = set(ids) - set(finished)
    assert all(statuses[task_id] == "failure" for task_id in unfinished)
    result = run.policies["running_timeout"]
    assert len(unfinished) <= result.affected <= result.matched <= ZOMBIES
