"""One reaper at a time: the second one says who holds the lock, skips, and counts nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from helpers import NOW, SERVER_BACKENDS, Tasks, ago, only, real_ago, settings_for
from reaper.database.connection import create_db_engine
from reaper.database.lock import exclusive_run
from reaper.database.table import open_table
from reaper.engine.cleanup import exclusive_cleanup, run_options
from reaper.errors import LockHeld
from reaper.policy.policies import standard_policies


def test_a_second_holder_is_refused_and_told_who_holds_the_lock(tasks: Tasks, database_url: str) -> None:
    other = create_engine(database_url)
    try:
        with (
            exclusive_run(tasks.engine, "processing_tasks"),
            pytest.raises(LockHeld, match="another reaper holds the lock") as caught,
            exclusive_run(other, "processing_tasks"),
        ):
            pass
        assert "reaper" in str(caught.value) or "connection" in str(caught.value)
        with exclusive_run(other, "processing_tasks"):  # released after the run
            pass
    finally:
        other.dispose()


def test_locks_on_different_tables_do_not_conflict(tasks: Tasks, database_url: str) -> None:
    other = create_engine(database_url)
    try:
        with exclusive_run(tasks.engine, "processing_tasks"), exclusive_run(other, "other_tasks"):
            pass
    finally:
        other.dispose()


def reaper_process(database_url: str, cwd: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "reaper", "--once", "--json", "--database-url", database_url]
    # Small batches with a pause make each run last a few seconds, so that the two overlap.
    argv += ["--batch-size", "5", "--sleep", "0.1", "--log-level", "WARNING"]
    return subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_reapers_at_once_exactly_one_does_the_work(tasks: Tasks, database_url: str, tmp_path: Path) -> None:
    for _ in range(200):
        tasks.add("success", finished_at=real_ago(days=40))
    runs = [reaper_process(database_url, tmp_path) for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    codes = sorted(run.returncode for run in runs)
    assert codes == [0, 3], outputs
    winner, loser = (0, 1) if runs[0].returncode == 0 else (1, 0)
    assert json.loads(outputs[winner][0])["policies"]["success_retention"]["affected"] == 200
    assert "another reaper holds the lock" in outputs[loser][1] and outputs[loser][0] == ""
    assert tasks.count() == 0


def test_a_dry_run_needs_no_lock(tasks: Tasks, database_url: str, tmp_path: Path) -> None:
    tasks.add("success", finished_at=real_ago(days=40))
    holder = create_engine(database_url)
    result: list[subprocess.CompletedProcess[str]] = []
    try:
        with exclusive_run(holder, "processing_tasks"):
            argv = [sys.executable, "-m", "reaper", "--once", "--dry-run", "--database-url", database_url]
            worker = threading.Thread(
                target=lambda: result.append(subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True))
            )
            worker.start()
            worker.join(timeout=60)
    finally:
        holder.dispose()
    assert result and result[0].returncode == 0, result[0].stderr if result else "no result"


def drop_the_lock_session(admin: Engine, tasks: Tasks, backend: str) -> None:
    """End the session that holds the run lock on ``tasks``' table, as a DBA (or a restart) would."""
    with admin.connect() as conn:
        if backend == "mariadb":
            name = f"reaper:{tasks.engine.url.database}.processing_tasks"
            holder = conn.execute(text("SELECT IS_USED_LOCK(:name)"), {"name": name}).scalar()
            conn.exec_driver_sql(f"KILL {int(holder)}")
        else:
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            )


def test_a_lock_whose_session_the_server_dropped_is_known_to_be_lost(
    tasks: Tasks, database_url: str, backend: str
) -> None:
    admin = create_engine(database_url)
    try:
        with exclusive_run(tasks.engine, "processing_tasks") as lock:
            assert lock.held()
            if backend == "sqlite":
                return  # a file lock lives as long as the process
            drop_the_lock_session(admin, tasks, backend)
            assert not lock.held()
    finally:
        admin.dispose()


@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)
def test_a_lock_known_to_be_lost_says_why_in_the_log(tasks: Tasks, database_url: str, backend: str) -> None:
    admin = create_engine(database_url)
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), format="{message}", level="WARNING")
    try:
        with exclusive_run(tasks.engine, "processing_tasks") as lock:
            drop_the_lock_session(admin, tasks, backend)
            assert not lock.held()
    finally:
        logger.remove(sink)
        admin.dispose()
    (lost, *_) = [line for line in lines if "the run lock counts as lost" in line]
    assert "asking whether it is still held failed: " in lost and lost.strip().split("failed: ")[1]


def test_a_mariadb_url_takes_the_same_lock_as_a_mysql_url(tasks: Tasks, database_url: str, backend: str) -> None:
    if backend != "mariadb":
        return
    mariadb_url = database_url.replace("mysql+pymysql://", "mariadb+pymysql://")
    other = create_engine(mariadb_url)
    try:
        with (
            exclusive_run(tasks.engine, "processing_tasks"),
            pytest.raises(LockHeld),
            exclusive_run(other, "processing_tasks"),
        ):
            pass
    finally:
        other.dispose()


def _lock_session(admin: Engine) -> tuple[str, Any]:
    """The state and transaction start of the session holding a PostgreSQL advisory lock."""
    with admin.connect() as conn:
        found = conn.execute(
            text(
                "SELECT a.state, a.xact_start FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted"
            )
        ).one()
    return str(found[0]), found[1]


@pytest.mark.parametrize("backend", only("postgresql"), indirect=True)
def test_the_postgresql_lock_session_holds_no_transaction_open(tasks: Tasks, database_url: str) -> None:
    admin = create_engine(database_url)
    try:
        with exclusive_run(tasks.engine, "processing_tasks") as lock:
            assert lock.held()  # the check between batches must not leave a transaction open either
            state, started = _lock_session(admin)
            assert (state, started) == ("idle", None)
    finally:
        admin.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("backend", only("postgresql"), indirect=True)
def test_a_run_of_several_batches_survives_the_idle_session_time_outs(
    tasks: Tasks, database_url: str, tmp_path: Path
) -> None:
    with tasks.engine.connect() as conn:  # the server ends a session idle (in a transaction or not) for 1 s
        for setting in ("idle_in_transaction_session_timeout", "idle_session_timeout"):
            conn.exec_driver_sql(f'ALTER DATABASE "{tasks.engine.url.database}" SET {setting} = 1000')
        conn.commit()
    tasks.engine.dispose()  # its sessions were opened before
    for _ in range(20):
        tasks.add("success", finished_at=ago(days=40))
    settings = settings_for(database_url, audit_log="", batch_size=5, batch_time_seconds=0, sleep_seconds=0.6)
    engine = create_db_engine(make_url(database_url))
    try:
        table = open_table(engine, settings)
        policies = [standard_policies(settings)[3]]
        run = exclusive_cleanup(table, policies, NOW, run_options(settings, dry_run=False), settings, "test")
    finally:
        engine.dispose()
    result = run.policies["success_retention"]
    assert run.stop_reason is None and (result.affected, result.batches) == (20, 4)
    tasks.engine.dispose()
    assert tasks.count() == 0
