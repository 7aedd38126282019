"""The audit line of every run that changed data, however it ended: a killed connection, a server
restart, a missing grant, a full disk, SIGINT or SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url

from helpers import NOW, SERVER_BACKENDS, Tasks, ago, real_ago, settings_for
from reaper.cli.command import main
from reaper.database.table import open_table
from reaper.safety.archive import JsonlArchive
from servers import Server

ZOMBIES, OLD = 30, 3000


def audit_lines(folder: Path) -> list[dict[str, Any]]:
    path = folder / "reaper-audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def fill(tasks: Tasks) -> None:
    """Running zombies to fail, then many old successes to delete in many batches (real clock: a real process)."""
    def row(status: str, **dates: Any) -> dict[str, Any]:
        values = {"status": status, "task_type": "download", "created_at": real_ago(days=50)}
        return {**values, **{name: moment.replace(tzinfo=None) for name, moment in dates.items()}}

    with tasks.engine.begin() as conn:
        conn.execute(insert(tasks.table), [row("running", started_at=real_ago(hours=30)) for _ in range(ZOMBIES)])
        conn.execute(insert(tasks.table), [row("success", completed_at=real_ago(days=40)) for _ in range(OLD)])


def changed(tasks: Tasks) -> tuple[int, int]:
    """Rows failed and rows deleted so far."""
    tasks.engine.dispose()  # after a server restart, no pooled connection is any good
    with tasks.engine.connect() as conn:
        failed = conn.execute(select(func.count()).where(tasks.table.c.status == "failure")).scalar_one()
        left = conn.execute(select(func.count()).select_from(tasks.table)).scalar_one()
    return failed, ZOMBIES + OLD - left


def start_reaper(url: str, folder: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "reaper", "--once", "--yes", "--database-url", url,
            "--batch-size", "25", "--sleep", "0.01"]
    return subprocess.Popen(argv, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def when_half_way(tasks: Tasks, process: subprocess.Popen[str]) -> None:
    """Wait until the run has failed the zombies and deleted some rows, not all."""
    deadline = time.monotonic() + 60
    while changed(tasks)[1] < 300:
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it was half-way"
        time.sleep(0.02)


def assert_audited(folder: Path, tasks: Tasks, outcome: str) -> dict[str, Any]:
    """The one audit line says what the database shows was changed, and why the run ended."""
    (line,) = audit_lines(folder)
    failed, deleted = changed(tasks)
    assert 0 < deleted < OLD, "the run should have stopped half-way"
    assert line["policies"]["running_timeout"]["by_action"] == {"failed": failed} and failed == ZOMBIES
    assert line["policies"]["success_retention"]["by_action"] == {"deleted": deleted}
    assert line["affected"] == failed + deleted and line["outcome"] == outcome and line["stop_reason"]
    return line


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_a_manual_run_after_the_batch_in_hand_and_its_audit_line_says_so(
    tasks: Tasks, database_url: str, tmp_path: Path, signum: signal.Signals
) -> None:
    fill(tasks)
    process = start_reaper(database_url, tmp_path)
    when_half_way(tasks, process)
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, err
    line = assert_audited(tmp_path, tasks, "stopped")
    assert line["stop_reason"] == f"interrupted by {signum.name}"
    assert f"Stopped early (interrupted by {signum.name})" in out
    errors = [text for text in err.splitlines() if text.startswith("reaper: error:")]
    assert errors == [f"reaper: error: interrupted by {signum.name}: stopped after the batch in hand "
                      f"({line['affected']} rows changed, as the audit log says)"]
    assert "Traceback" not in err


def own_user(server: Server, database_url: str, privileges: str = "SELECT, UPDATE, DELETE") -> tuple[str, str]:
    """A login of the test's own, with ``privileges`` on its database: its name and URL."""
    user = f"reaper_{uuid.uuid4().hex[:8]}"
    return user, server.add_user(str(make_url(database_url).database), user, privileges)


@pytest.mark.slow
@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)
def test_a_run_whose_connections_are_killed_leaves_the_audit_line_of_what_it_did(
    tasks: Tasks, database_url: str, server: Server, tmp_path: Path
) -> None:
    fill(tasks)
    user, url = own_user(server, database_url)
    process = start_reaper(url, tmp_path)
    when_half_way(tasks, process)
    assert server.kill_sessions(user) > 0  # as a DBA's KILL or pg_terminate_backend would
    _, err = process.communicate(timeout=60)
    # A statement on a killed session fails the run; between statements the next batch takes a new
    # session, and the run stops when it finds its lock's session gone. Either way, its audit line.
    (line,) = audit_lines(tmp_path)
    if line["outcome"] == "failed":
        assert_audited(tmp_path, tasks, "failed")
        assert line["stop_reason"].startswith("failed: ") and process.returncode == 1
        assert err.count("reaper: error:") == 1, err
    else:
        assert_audited(tmp_path, tasks, "stopped")
        assert "the run lock was lost" in line["stop_reason"] and process.returncode == 0, err
    assert "Traceback" not in err, err


@pytest.mark.slow
@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)
def test_a_run_cut_by_a_server_restart_leaves_the_audit_line_of_what_it_did(
    tasks: Tasks, database_url: str, server: Server, tmp_path: Path
) -> None:
    fill(tasks)
    process = start_reaper(database_url, tmp_path)
    when_half_way(tasks, process)
    server.stop_process()
    try:
        _, err = process.communicate(timeout=60)
    finally:
        server.start()
    line = assert_audited(tmp_path, tasks, "failed")
    assert line["stop_reason"].startswith("failed: ") and process.returncode == 1
    assert err.count("reaper: error:") == 1 and "Traceback" not in err, err


@freeze_time(NOW)
@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)
def test_a_user_without_delete_leaves_the_audit_line_of_the_rows_it_failed(
    tasks: Tasks, database_url: str, server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    zombies = [tasks.add("running", started_at=ago(hours=30)) for _ in range(3)]
    old = [tasks.add("success", finished_at=ago(days=40)) for _ in range(4)]
    _, url = own_user(server, database_url, "SELECT, UPDATE")
    code = main(["--once", "--yes", "--database-url", url])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert all(tasks.status_of(task) == "failure" for task in zombies) and all(tasks.get(task) for task in old)
    (line,) = audit_lines(Path.cwd())
    assert line["affected"] == 3 and line["policies"]["running_timeout"]["affected"] == 3
    assert line["outcome"] == "failed" and line["stop_reason"].startswith("failed: ")
    assert "denied" in line["stop_reason"]  # DELETE command denied (MariaDB), permission denied (PostgreSQL)


@freeze_time(NOW)
def test_a_full_disk_under_the_jsonl_archive_leaves_the_audit_line_and_deletes_nothing(
    tasks: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    zombies = [tasks.add("running", started_at=ago(hours=30)) for _ in range(3)]
    old = [tasks.add("success", finished_at=ago(days=40)) for _ in range(4)]
    table = open_table(tasks.engine, settings_for(database_url, tasks.shape)).table
    path = JsonlArchive(Path("kept"), table, NOW, id_column="id").path  # where this run will write
    path.symlink_to("/dev/full")  # every write fails with ENOSPC, as on a full disk
    code = main(["--once", "--yes", "--database-url", database_url, "--archive", "jsonl", "--archive-dir", "kept"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("reaper: error:")]
    assert code == 1 and len(errors) == 1 and "No space left on device" in errors[0]
    assert all(tasks.status_of(task) == "failure" for task in zombies) and all(tasks.get(task) for task in old)
    (line,) = audit_lines(Path.cwd())
    assert line["affected"] == 3 and line["outcome"] == "failed" and "No space left on device" in line["stop_reason"]
