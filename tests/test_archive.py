"""Nothing lost: archive before delete, kill -9, restore, the audit trail, confirmation, progress."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import Enum, create_engine, event, insert, select, update

import servers
from helpers import NOW, Shape, Tasks, ago, real_ago, settings_for
from reaper.cli.command import main
from reaper.cli.manual import ConfirmationRefused, confirm_deletions
from reaper.database.filenames import file_safe
from reaper.database.table import open_table
from reaper.engine.reap import RunOptions, run_policies
from reaper.policy.policies import standard_policies
from reaper.results import RunResult
from reaper.safety.archive import JsonlArchive, TableArchive
from reaper.safety.jsonl import read_jsonl_archive
from reaper.safety.restore import restore_archive


def purge(tasks: Tasks, database_url: str, archive: Any, batch_size: int = 3) -> RunResult:
    """Run the two retention policies at NOW, archiving into ``archive``."""
    settings = settings_for(database_url, tasks.shape)
    policies = standard_policies(settings)[2:]
    options = RunOptions(batch_size=batch_size, archive=archive)
    return run_policies(open_table(tasks.engine, settings), policies, NOW, options)


def fill(tasks: Tasks, when: Callable[..., datetime] = ago) -> dict[str, list[Any]]:
    """Nine rows past their retention and two to keep, dated by ``when`` (``real_ago`` for a reaper process)."""
    old = [tasks.add("failure", finished_at=when(days=9), error="boom") for _ in range(4)]
    old += [tasks.add("success", finished_at=when(days=40), started_at=when(days=40, hours=1)) for _ in range(5)]
    kept = [tasks.add("success", finished_at=when(days=2)), tasks.add("running", started_at=when(hours=1))]
    return {"old": old, "kept": kept}


def test_the_jsonl_archive_holds_exactly_the_deleted_rows(tasks: Tasks, database_url: str, tmp_path: Path) -> None:
    ids = fill(tasks)
    before = {row[0]: row for row in tasks.dump()}
    archive = JsonlArchive(tmp_path, tasks.table, NOW, id_column="id")
    run = purge(tasks, database_url, archive)
    archived = list(read_jsonl_archive(archive.path))
    assert sorted(row["id"] for row in archived) == sorted(ids["old"])
    assert run.affected == len(ids["old"]) and tasks.count() == len(ids["kept"])
    assert set(archived[0]) == set(tasks.table.columns.keys())
    assert all(row["status"] == before[row["id"]][1] for row in archived)
    assert archive.path.name.endswith(".jsonl.gz")


def test_a_row_revived_between_select_and_delete_is_neither_deleted_nor_archived(
    tasks: Tasks, database_url: str, engine: Any, tmp_path: Path
) -> None:
    revived = tasks.add("failure", finished_at=ago(days=10))
    doomed = tasks.add("failure", finished_at=ago(days=10))
    worker = create_engine(engine.url)
    done: list[bool] = []

    def before_write(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not done and statement.lstrip().upper().startswith(
            ("DELETE", "SELECT PROCESSING_TASKS.ID, PROCESSING_TASKS.STATUS")
        ):
            done.append(True)
            with worker.begin() as worker_conn:
                worker_conn.execute(update(tasks.table).where(tasks.table.c.id == revived).values(status="pending"))

    event.listen(engine, "before_cursor_execute", before_write)
    archive = JsonlArchive(tmp_path, tasks.table, NOW, id_column="id")
    run = purge(tasks, database_url, archive, batch_size=10)
    worker.dispose()
    assert tasks.status_of(revived) == "pending" and tasks.get(doomed) is None
    assert [row["id"] for row in read_jsonl_archive(archive.path)] == [doomed]
    assert run.policies["failure_retention"].affected == 1


def test_the_table_archive_holds_exactly_the_deleted_rows(tasks: Tasks, database_url: str) -> None:
    ids = fill(tasks)
    archive = TableArchive(tasks.engine, tasks.table, "processing_tasks_archive", NOW)
    purge(tasks, database_url, archive)
    with tasks.engine.connect() as conn:
        archived = conn.execute(select(archive.table.c.id, archive.table.c.reaper_archived_at)).all()
    assert sorted(row[0] for row in archived) == sorted(ids["old"])
    assert {row[1] for row in archived} == {NOW.replace(tzinfo=None)}


@pytest.mark.parametrize(
    "shape",
    [
        Shape(),
        Shape(status_type=Enum("PENDING", "RUNNING", "SUCCESS", "FAILURE", name="st"), aware_timestamps=True),
    ],
    ids=["strings", "enum-timestamptz"],
)
def test_restore_brings_the_deleted_rows_back_exactly(
    make_tasks: Callable[..., Tasks], database_url: str, tmp_path: Path, shape: Shape
) -> None:
    tasks = make_tasks(shape)
    upper = shape.status_type is not None
    for _ in range(4):
        tasks.add("FAILURE" if upper else "failure", finished_at=ago(days=9, microseconds=123456), error="disk full é")
    tasks.add("SUCCESS" if upper else "success", finished_at=ago(days=1))
    before = tasks.dump()
    archive = JsonlArchive(tmp_path, tasks.table, NOW, id_column="id")
    assert purge(tasks, database_url, archive).affected == 4
    table = open_table(tasks.engine, settings_for(database_url, shape))
    dry = restore_archive(table, archive.path, dry_run=True, batch_size=3)
    assert (dry.read, dry.restored, tasks.count()) == (4, 4, 1)
    done = restore_archive(table, archive.path, dry_run=False, batch_size=3)
    assert (done.restored, done.already_present) == (4, 0)
    assert tasks.dump() == before
    again = restore_archive(table, archive.path, dry_run=False, batch_size=3)
    assert (again.restored, again.already_present) == (0, 4) and tasks.dump() == before


def archived_ids(folder: Path) -> set[Any]:
    return {row["id"] for path in folder.glob("*.jsonl.gz") for row in read_jsonl_archive(path)}


@pytest.mark.slow
def test_kill_9_in_the_middle_of_a_run_leaves_no_row_deleted_and_unarchived(
    tasks: Tasks, database_url: str, tmp_path: Path
) -> None:
    rows = [{"status": "success", "task_type": "download", "created_at": real_ago(days=41).replace(tzinfo=None),
             "completed_at": real_ago(days=40).replace(tzinfo=None)} for _ in range(3000)]
    with tasks.engine.begin() as conn:
        conn.execute(insert(tasks.table), rows)
    everything = {row[0] for row in tasks.dump()}
    argv = [sys.executable, "-m", "reaper", "--once", "--yes", "--database-url", database_url, "--archive", "jsonl",
            "--archive-dir", str(tmp_path / "archive"), "--batch-size", "25", "--sleep", "0.01"]
    process = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while tasks.count() > 2000 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    remaining = {row[0] for row in tasks.dump()}
    deleted = everything - remaining
    assert 0 < len(deleted) < 3000, "the kill should land in the middle of the run"
    assert deleted <= archived_ids(tmp_path / "archive")


@freeze_time(NOW)
@pytest.mark.parametrize("name", ["../escape", "jobs/eu"])
def test_a_table_name_that_looks_like_a_path_is_archived_inside_the_archive_directory(
    make_tasks: Callable[..., Tasks], database_url: str, tmp_path: Path, name: str,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    tasks = make_tasks(Shape(name=name))
    zombie = tasks.add("running", started_at=ago(hours=30))  # the first policy fails it before any delete
    ids = fill(tasks)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = ["--once", "--database-url", database_url, "--table", name, "--archive", "jsonl", "--archive-dir", "kept"]
    assert main(argv) == 0, capsys.readouterr().err
    files = [path for path in tmp_path.rglob("*.jsonl.gz")]
    assert len(files) == 1 and files[0].parent == work / "kept"
    assert files[0].name.startswith(("___escape-", "jobs_eu-"))
    assert sorted(row["id"] for row in read_jsonl_archive(files[0])) == sorted(ids["old"])
    assert tasks.status_of(zombie) == "failure"


def test_archive_file_names_of_different_tables_never_collide() -> None:
    assert file_safe("processing_tasks") == "processing_tasks"
    names = {file_safe(name) for name in ("jobs/eu", "jobs_eu", "jobs.eu", "jobs eu", "x" * 300)}
    assert len(names) == 5 and all(len(name) <= 120 and "/" not in name for name in names)


# --- the audit trail -----------------------------------------------------------------------------------------


@freeze_time(NOW)
def test_each_run_that_changes_data_appends_one_audit_line(
    tasks: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(tasks)
    argv = ["--once", "--database-url", database_url, "--archive", "jsonl", "--archive-dir", "kept"]
    assert main(argv) == 0
    assert main([*argv, "--dry-run"]) == 0  # a dry run changes nothing: no line
    assert main(argv) == 0  # nothing left to do: no line
    lines = [json.loads(line) for line in Path("reaper-audit.jsonl").read_text().splitlines()]
    assert len(lines) == 1
    (line,) = lines
    assert line["mode"] == "once" and line["affected"] == 9 and line["user"] and line["host"]
    assert line["policies"]["failure_retention"]["affected"] == 4
    assert line["policies"]["success_retention"]["id_range"][0] is not None
    assert line["settings"]["failure_retention_days"] == 7 and line["archive"].endswith(".jsonl.gz")
    assert line["settings"]["batch_ceiling"] == 100_000  # batch_size left at its default: batches could grow
    assert servers.PASSWORD not in json.dumps(line)  # the test servers' real secret
    assert "***" in line["database"] or database_url.startswith("sqlite")
    capsys.readouterr()


# --- confirmation ----------------------------------------------------------------------------------------------


@freeze_time(NOW)
def test_a_large_deletion_without_a_terminal_is_refused_without_yes(
    tasks: Tasks, database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(tasks)
    monkeypatch.setenv("REAPER_CONFIRM_ABOVE", "5")
    code = main(["--once", "--database-url", database_url])
    err = capsys.readouterr().err
    assert code == 4 and "would delete 9 rows" in err and "--yes" in err
    assert tasks.count() == 11
    assert main(["--once", "--database-url", database_url, "--yes"]) == 0 and tasks.count() == 2


def test_a_terminal_user_is_asked_and_no_means_nothing_is_deleted() -> None:
    policies = standard_policies(settings_for("sqlite://"))
    counts = {"failure_retention": 30, "success_retention": 0, "running_timeout": 500}
    questions: list[str] = []

    def answer(text: str) -> Callable[[str], str]:
        def ask(question: str) -> str:
            questions.append(question)
            return text

        return ask

    with pytest.raises(ConfirmationRefused, match="not confirmed"):
        confirm_deletions(counts, policies, 10, False, answer("no"))
    confirm_deletions(counts, policies, 10, False, answer("yes"))
    confirm_deletions(counts, policies, 30, False, None)  # within the limit: no question
    confirm_deletions(counts, policies, 10, True, None)  # --yes
    assert len(questions) == 2 and "would delete 30 rows" in questions[0]


# --- progress ---------------------------------------------------------------------------------------------------


def run_in_terminal(argv: list[str], cwd: Path) -> str:
    """Run ``argv`` with stdin and stderr on a pseudo-terminal; return what the terminal showed."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 40 rows, 120 columns
    process = subprocess.Popen(argv, cwd=cwd, stdin=follower, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    process.wait(timeout=60)
    os.close(leader)
    return shown.decode(errors="replace")


@pytest.mark.slow
def test_progress_bars_show_on_a_terminal_only(tasks: Tasks, database_url: str, tmp_path: Path) -> None:
    fill(tasks, real_ago)
    argv = [sys.executable, "-m", "reaper", "--once", "--yes", "--database-url", database_url, "--batch-size", "2"]
    piped = subprocess.run([*argv, "--dry-run"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "rows/s" not in piped.stderr and piped.returncode == 0
    as_json = run_in_terminal([*argv, "--dry-run", "--json"], tmp_path)
    assert "rows/s" not in as_json
    dry = run_in_terminal([*argv, "--dry-run"], tmp_path)
    assert "failure_retention" in dry and "rows/s" in dry
    real = run_in_terminal(argv, tmp_path)  # counted first, so the bar knows its total: 4/4, 5/5
    assert "4/4" in real and "5/5" in real and tasks.count() == 2
