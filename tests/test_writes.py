"""Writes under pressure (rows refused by a foreign key, rows locked by the application), and requeue."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine, make_url

from helpers import (
    NOW,
    WITH_HEARTBEAT_AND_ATTEMPTS,
    Shape,
    Tasks,
    ago,
    change_just_before_the_write,
    referenced_by_outputs,
    row_locked,
    settings_for,
)
from reaper.database.table import open_table
from reaper.engine.reap import RunOptions, run_policies
from reaper.errors import SchemaError
from reaper.policy.policies import standard_policies
from reaper.results import RunResult
from reaper.safety.archive import open_archive

# Every behaviour holds on both plans: along the primary key, and along the indexes (see reaper.engine.plans).
pytestmark = pytest.mark.both_plans


def run(engine: Engine, database_url: str, tasks: Tasks, policy: int, **options: Any) -> RunResult:
    settings = settings_for(database_url, tasks.shape)
    policies = [standard_policies(settings)[policy]]
    return run_policies(open_table(engine, settings), policies, NOW, RunOptions(sleep=lambda _: None, **options))


def test_rows_refused_by_a_foreign_key_are_skipped_named_and_the_rest_deleted(
    tasks: Tasks, database_url: str, reaper_engine: Engine
) -> None:
    ids = [tasks.add("failure", finished_at=ago(days=10)) for _ in range(10)]
    referenced_by_outputs(tasks, [ids[2], ids[6]])
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


@pytest.mark.slow
def test_a_locked_row_is_retried_then_skipped_and_the_run_goes_on(
    tasks: Tasks, database_url: str, reaper_engine: Engine
) -> None:
    zombies = [tasks.add("running", started_at=ago(hours=30)) for _ in range(3)]
    with row_locked(tasks, database_url, zombies[1]):
        result = run(reaper_engine, database_url, tasks, 0, batch_size=1, max_retries=1).policies["running_timeout"]
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
            assert conn.execute(text("SELECT @@innodb_lock_wait_timeout")).scalar() == 1  # 0.2 s, rounded up
            assert float(conn.execute(text("SELECT @@max_statement_time")).scalar()) == 30
            assert conn.execute(text("SELECT @@time_zone")).scalar() == "+00:00"
        elif backend == "postgresql":
            assert conn.execute(text("SHOW lock_timeout")).scalar() == "200ms"
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "30s"
        else:
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


# --- requeue instead of fail -----------------------------------------------------------------------


def reap_all(tasks: Tasks, database_url: str, now: datetime = NOW, **overrides: Any) -> RunResult:
    """Run the four policies once at ``now`` with the given setting overrides."""
    settings = settings_for(database_url, tasks.shape, **overrides)
    return run_policies(open_table(tasks.engine, settings), standard_policies(settings), now, RunOptions(batch_size=2))


@pytest.fixture
def counted(make_tasks: Callable[..., Tasks]) -> Tasks:
    """A task table with a heartbeat column and an attempts column."""
    return make_tasks(Shape(columns=WITH_HEARTBEAT_AND_ATTEMPTS))


def test_requeue_sets_a_zombie_back_to_pending_with_a_reason_and_no_start_time(tasks: Tasks, database_url: str) -> None:
    zombie = tasks.add("running", created_at=ago(hours=30), started_at=ago(hours=25))
    run = reap_all(tasks, database_url, running_timeout_action="requeue")
    row = tasks.get(zombie)
    assert row["status"] == "pending" and row["started_at"] is None
    assert "over the 24 h limit" in row["error"] and "requeued at 2026-11-29 12:00:00 UTC" in row["error"]
    assert run.policies["running_timeout"].done == {"requeued": 1}
    # The requeued task waits afresh: the pending policy of the same pass leaves it alone.
    assert run.policies["pending_timeout"].matched == 0


def test_requeue_without_an_attempts_column_is_unbounded(tasks: Tasks, database_url: str) -> None:
    zombie = tasks.add("running", created_at=ago(days=3), started_at=ago(hours=25))
    for day in range(3):
        later = NOW + timedelta(days=day)
        with tasks.engine.begin() as conn:  # a worker picks it up again and dies again
            conn.execute(update(tasks.table).where(tasks.table.c.id == zombie).values(
                status="running", started_at=(later - timedelta(hours=25)).replace(tzinfo=None)))
        reap_all(tasks, database_url, now=later, running_timeout_action="requeue")
        assert tasks.status_of(zombie) == "pending"


def test_requeue_counts_attempts_and_fails_tasks_past_the_bound(counted: Tasks, database_url: str) -> None:
    fresh = counted.add("running", started_at=ago(hours=25))
    second = counted.add("running", started_at=ago(hours=25), attempts=2)
    spent = counted.add("running", started_at=ago(hours=25), attempts=3)
    run = reap_all(counted, database_url, running_timeout_action="requeue", max_attempts=3)
    assert [(counted.get(task)["status"], counted.get(task)["attempts"]) for task in (fresh, second, spent)] == [
        ("pending", 1), ("pending", 3), ("failure", 3)
    ]
    assert "its attempts reached the bound of 3" in counted.get(spent)["error"]
    assert run.policies["running_timeout"].done == {"requeued": 2, "failed": 1}


def test_requeue_clears_a_stale_heartbeat_so_the_next_worker_is_not_condemned(
    counted: Tasks,
    database_url: str,
) -> None:
    silent = counted.add("running", started_at=ago(hours=1), heartbeat_at=ago(minutes=30))
    reap_all(counted, database_url, running_timeout_action="requeue", heartbeat_timeout_minutes=10)
    row = counted.get(silent)
    assert (row["status"], row["heartbeat_at"], row["attempts"]) == ("pending", None, 1)


def test_a_requeued_pending_task_waits_a_whole_timeout_again(counted: Tasks, database_url: str) -> None:
    stuck = counted.add("pending", created_at=ago(hours=3))
    reap_all(counted, database_url, pending_timeout_action="requeue")
    assert (counted.get(stuck)["status"], counted.get(stuck)["attempts"]) == ("pending", 1)
    reap_all(counted, database_url, now=NOW + timedelta(hours=1), pending_timeout_action="requeue")
    assert counted.get(stuck)["attempts"] == 1
    reap_all(counted, database_url, now=NOW + timedelta(hours=2, seconds=1), pending_timeout_action="requeue")
    assert counted.get(stuck)["attempts"] == 2


def test_requeue_is_chosen_per_task_type(counted: Tasks, database_url: str) -> None:
    download = counted.add("running", task_type="download", started_at=ago(hours=25))
    render = counted.add("running", task_type="render", started_at=ago(hours=25))
    reap_all(counted, database_url, task_types={"download": {"running_timeout_action": "requeue"}})
    assert (counted.status_of(download), counted.status_of(render)) == ("pending", "failure")


def test_a_task_that_finishes_between_select_and_requeue_stays_finished(
    counted: Tasks, database_url: str, engine: Engine
) -> None:
    racer = counted.add("running", started_at=ago(hours=25))
    change_just_before_the_write(engine, counted, racer, status="success", finished_at=NOW)
    run = reap_all(counted, database_url, running_timeout_action="requeue")
    assert (counted.status_of(racer), counted.get(racer)["attempts"]) == ("success", None)
    assert run.policies["running_timeout"].affected == 0


def test_requeue_needs_an_updated_at_column(make_tasks: Callable[..., Tasks], database_url: str) -> None:
    columns = {role: (None if role == "updated_at" else name) for role, name in Shape().columns.items()}
    tasks = make_tasks(Shape(columns=columns))
    with pytest.raises(SchemaError, match="requeue needs an updated-at column"):
        reap_all(tasks, database_url, pending_timeout_action="requeue")


def test_the_dry_run_foresees_which_rows_a_bounded_requeue_would_fail(counted: Tasks, database_url: str) -> None:
    counted.add("running", started_at=ago(hours=25))
    counted.add("running", started_at=ago(hours=25), attempts=3)
    settings = settings_for(database_url, counted.shape, running_timeout_action="requeue", max_attempts=3)
    table = open_table(counted.engine, settings)
    before = counted.dump()
    dry = run_policies(table, standard_policies(settings), NOW, RunOptions(dry_run=True)).policies["running_timeout"]
    assert counted.dump() == before
    real = run_policies(table, standard_policies(settings), NOW, RunOptions()).policies["running_timeout"]
    assert dry.done == real.done == {"requeued": 1, "failed": 1}
    assert dry.affected == 0 and real.affected == 2


def sharded_table(engine: Engine) -> Table:
    """A task table whose primary key is (id, shard): the same id may appear once per shard."""
    stamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    table = Table(
        "processing_tasks", MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("shard", Integer, primary_key=True, autoincrement=False),
        Column("status", String(20)), Column("task_type", String(32)),
        *(Column(name, stamp) for name in ("created_at", "started_at", "completed_at", "updated_at")),
        Column("error_message", Text()),
    )
    table.create(engine)
    return table


def sharded_row(task_id: int, shard: int, status: str, **ages: datetime) -> dict[str, Any]:
    stamps = dict.fromkeys(("started_at", "completed_at", "updated_at"), None)
    stamps.update({name: moment.replace(tzinfo=None) for name, moment in ages.items()})
    return {"id": task_id, "shard": shard, "status": status, "task_type": "download",
            "created_at": ago(days=60).replace(tzinfo=None), **stamps}


@pytest.mark.parametrize("archive", [None, "jsonl"])
def test_a_table_keyed_by_id_and_shard_gets_each_row_written_once_and_counted_once(
    engine: Engine, database_url: str, tmp_path: Path, archive: str | None
) -> None:
    table = sharded_table(engine)
    rows = [sharded_row(n, 1, "running", started_at=ago(hours=30)) for n in range(1, 9)]
    rows += [sharded_row(n, 2, "running", started_at=ago(hours=40)) for n in range(1, 5)]  # older twins
    rows += [sharded_row(5, 2, "running", started_at=ago(hours=1))]  # a young twin: stays running
    rows += [sharded_row(n, shard, "success", completed_at=ago(days=40)) for n in range(20, 26) for shard in (1, 2)]
    rows += [sharded_row(20, 3, "success", completed_at=ago(days=1))]  # a young twin: stays
    with engine.begin() as conn:
        conn.execute(insert(table), rows)
    settings = settings_for(database_url, archive=archive or "none", archive_dir=tmp_path)
    options = RunOptions(sleep=lambda _: None, batch_size=3, archive=open_archive(
        settings.safety.archive, settings.safety.archive_dir, None, table, engine, NOW, "id"))
    run = run_policies(open_table(engine, settings), standard_policies(settings), NOW, options)
    failed, deleted = run.policies["running_timeout"], run.policies["success_retention"]
    assert (failed.matched, failed.affected) == (12, 12)
    assert (deleted.matched, deleted.affected) == (12, 12)
    with engine.connect() as conn:
        left = {(row.id, row.shard): row for row in conn.execute(select(table))}
    assert set(left) == {*((n, 1) for n in range(1, 9)), *((n, 2) for n in range(1, 6)), (20, 3)}
    assert left[(5, 2)].status == "running" and left[(20, 3)].status == "success"
    assert {left[(n, shard)].status for n in range(1, 5) for shard in (1, 2)} == {"failure"}  # each twin failed
    assert left[(1, 2)].started_at == ago(hours=40).replace(tzinfo=None)  # its own start kept, not its twin's
