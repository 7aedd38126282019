"""``reaper --restore FILE``: the whole file checked first, damage located, refused rows named."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import text

from helpers import NOW, SERVER_BACKENDS, Tasks, ago, settings_for
from reaper.cli.command import main
from reaper.database.table import open_table
from reaper.engine.reap import RunOptions, run_policies
from reaper.policy.policies import standard_policies
from reaper.safety.archive import JsonlArchive

ROWS = 12
BATCH = 4  # three gzip members of four rows


def archive_old_rows(tasks: Tasks, database_url: str, folder: Path, rows: int = ROWS) -> tuple[Path, list[Any]]:
    """Archive and delete ``rows`` old successes, ``BATCH`` per member; return the file and their ids."""
    ids = [tasks.add("success", finished_at=ago(days=40, minutes=n), error=f"row {n}") for n in range(rows)]
    settings = settings_for(database_url, tasks.shape)
    table = open_table(tasks.engine, settings)
    archive = JsonlArchive(folder, table.table, NOW, id_column="id")
    run = run_policies(table, standard_policies(settings)[3:], NOW, RunOptions(batch_size=BATCH, archive=archive))
    assert run.affected == rows and tasks.count() == 0
    return archive.path, ids


def split_members(data: bytes) -> list[bytes]:
    """The gzip members of an archive file's bytes (one per batch), as written."""
    found = []
    while data:
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        decompressor.decompress(data)
        size = len(data) - len(decompressor.unused_data)
        found.append(data[:size])
        data = data[size:]
    return found


def restore(capsys: pytest.CaptureFixture[str], database_url: str, path: Path, *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()  # what came before (a previous test's log handler may still write to stderr)
    code = main(["--restore", str(path), "--database-url", database_url, *extra])
    out, err = capsys.readouterr()
    return code, out, err


def one_error(err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("reaper: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


# --- damaged files -------------------------------------------------------------------------------------------


def test_a_flipped_byte_restores_nothing_and_names_the_damaged_member(
    tasks: Tasks, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = archive_old_rows(tasks, database_url, tmp_path)
    parts = split_members(path.read_bytes())
    second = bytearray(parts[1])
    second[len(second) // 2] ^= 0xFF
    path.write_bytes(parts[0] + bytes(second) + parts[2])
    code, _, err = restore(capsys, database_url, path)
    assert code == 2 and "member 2" in one_error(err) and str(path) in one_error(err)
    assert tasks.count() == 0


def test_a_file_that_is_not_gzip_restores_nothing(
    tasks: Tasks, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rows.jsonl.gz"
    path.write_text('{"id": 1, "status": "success"}\n')
    code, _, err = restore(capsys, database_url, path)
    assert code == 2 and "not a gzip" in one_error(err)
    path.write_bytes(b"")
    code, _, err = restore(capsys, database_url, path)
    assert code == 2 and "empty" in one_error(err)
    assert tasks.count() == 0


def test_a_file_cut_short_after_its_rows_were_deleted_restores_nothing(
    tasks: Tasks, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = archive_old_rows(tasks, database_url, tmp_path)
    first, second, _ = split_members(path.read_bytes())
    path.write_bytes(first + second[: len(second) // 2])
    code, _, err = restore(capsys, database_url, path)
    assert code == 2 and "cut short" in one_error(err) and "member 2" in one_error(err)
    assert tasks.count() == 0


def test_the_cut_short_last_member_of_a_killed_run_is_skipped_and_said_so(
    tasks: Tasks, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = archive_old_rows(tasks, database_url, tmp_path)
    first, second, third = split_members(path.read_bytes())
    # The run was killed while it wrote its third batch, so that batch's rows were never deleted.
    assert restore(capsys, database_url, write_members_bytes(tmp_path / "third.jsonl.gz", third))[0] == 0
    path.write_bytes(first + second + third[: len(third) * 2 // 3])
    code, out, err = restore(capsys, database_url, path, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["read"], report["restored"], report["already_present"]) == (2 * BATCH, 2 * BATCH, 0)
    assert "member 3" in err and "cut short" in err and "skipped" in err
    assert tasks.count() == ROWS


def write_members_bytes(path: Path, *parts: bytes) -> Path:
    path.write_bytes(b"".join(parts))
    return path


def write_members(path: Path, *texts: str | bytes) -> Path:
    path.write_bytes(b"".join(gzip.compress(part if isinstance(part, bytes) else part.encode()) for part in texts))
    return path


GOOD = '{"id": 9001, "status": "success", "created_at": "2026-10-01T00:00:00"}\n'


@pytest.mark.parametrize(
    "second, where, what",
    [
        ('{"id": 9002, "status": "success"}\n{"id": 9003, "status": \n', "member 2, line 2", "not JSON"),
        (b'{"id": 9002, "status": "success"}\n{"id": 9003, "status": "\xff"}\n', "member 2, line 2", "UTF-8"),
        ('{"id": 9002, "status": "success"}\n{"status": "success"}\n', "member 2, line 2", "no id"),
        ('{"id": 9002, "status": "success", "colour": "red"}\n', "member 2, line 1", "colour"),
        ('[9002, "success"]\n', "member 2, line 1", "not a JSON object"),
    ],
    ids=["bad-json", "bad-utf8", "no-id", "unknown-column", "not-an-object"],
)
def test_a_damaged_line_restores_nothing_and_says_where_it_is(
    tasks: Tasks,
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    second: str | bytes,
    where: str,
    what: str,
) -> None:
    path = write_members(tmp_path / "rows.jsonl.gz", GOOD, second)
    code, _, err = restore(capsys, database_url, path)
    error = one_error(err)
    assert code == 2 and where in error and what in error, error
    assert tasks.count() == 0


@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)  # SQLite keeps any text in a date column
def test_a_value_that_does_not_fit_its_column_restores_nothing_and_names_the_column(
    tasks: Tasks, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = '{"id": 9002, "status": "success", "completed_at": "last tuesday"}\n'
    path = write_members(tmp_path / "rows.jsonl.gz", GOOD, bad)
    code, _, err = restore(capsys, database_url, path)
    error = one_error(err)
    assert code == 2 and "member 2, line 1" in error and "completed_at" in error, error
    assert tasks.count() == 0


# --- refused rows ----------------------------------------------------------------------------------------------

BATCHES_TABLE = {
    "sqlite": "ALTER TABLE processing_tasks ADD COLUMN batch_id INTEGER "
    "CONSTRAINT fk_task_batch REFERENCES task_batches (id)",
    "mariadb": "ALTER TABLE processing_tasks ADD COLUMN batch_id INTEGER, "
    "ADD CONSTRAINT fk_task_batch FOREIGN KEY (batch_id) REFERENCES task_batches (id)",
    "postgresql": "ALTER TABLE processing_tasks ADD COLUMN batch_id INTEGER "
    "CONSTRAINT fk_task_batch REFERENCES task_batches (id)",
}


@freeze_time(NOW)
def test_rows_the_database_refuses_are_named_by_constraint_and_fail_the_restore(
    tasks: Tasks, backend: str, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with tasks.engine.begin() as conn:
        conn.execute(text("CREATE TABLE task_batches (id INTEGER PRIMARY KEY)"))
        conn.execute(text("INSERT INTO task_batches (id) VALUES (1), (2)"))
        conn.execute(text(BATCHES_TABLE[backend]))
    ids = [tasks.add("success", finished_at=ago(days=40)) for _ in range(40)]
    with tasks.engine.begin() as conn:
        conn.execute(text(f"UPDATE processing_tasks SET batch_id = 1 WHERE id <= {ids[9]}"))
        conn.execute(text(f"UPDATE processing_tasks SET batch_id = 2 WHERE id > {ids[9]}"))
    argv = ["--once", "--yes", "--database-url", database_url, "--archive", "jsonl", "--archive-dir", "kept"]
    assert main(argv) == 0 and tasks.count() == 0
    with tasks.engine.begin() as conn:
        conn.execute(text("DELETE FROM task_batches WHERE id = 2"))  # the parents of 30 rows are gone
    (path,) = Path("kept").glob("*.jsonl.gz")
    code, out, err = restore(capsys, database_url, path, "--json")
    report = json.loads(out)
    assert code == 1 and "Traceback" not in err
    assert (report["read"], report["restored"], report["already_present"], report["refused"]) == (40, 10, 0, 30)
    name = "a FOREIGN KEY constraint" if backend == "sqlite" else "fk_task_batch"
    assert report["refused_by"] == {name: 30} and name in one_error(err)
    again = json.loads(restore(capsys, database_url, path, "--json")[1])
    assert (again["restored"], again["already_present"], again["refused"]) == (0, 10, 30)  # only ids that exist


@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)
def test_a_new_not_null_column_refuses_every_row_and_none_is_called_present(
    tasks: Tasks, backend: str, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = archive_old_rows(tasks, database_url, tmp_path)
    with tasks.engine.begin() as conn:
        conn.execute(text("ALTER TABLE processing_tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0"))
        conn.execute(text("ALTER TABLE processing_tasks ALTER COLUMN priority DROP DEFAULT"))
    code, out, err = restore(capsys, database_url, path, "--json")
    report = json.loads(out)
    assert code == 1 and (report["restored"], report["already_present"], report["refused"]) == (0, 0, ROWS)
    assert "priority" in one_error(err) and tasks.count() == 0


@pytest.mark.slow
@pytest.mark.parametrize("backend", [name for name in SERVER_BACKENDS if name == "postgresql"], indirect=True)
def test_a_refused_restore_prints_one_error_line_and_nothing_from_the_driver(
    tasks: Tasks, database_url: str, tmp_path: Path
) -> None:
    path, _ = archive_old_rows(tasks, database_url, tmp_path, rows=200)
    with tasks.engine.begin() as conn:
        conn.execute(text("ALTER TABLE processing_tasks ADD CONSTRAINT no_errors CHECK (error_message IS NULL)"))
    argv = [sys.executable, "-m", "reaper", "--restore", str(path), "--database-url", database_url]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "no_errors: 200" in done.stdout
    assert done.stderr.count("reaper: error:") == 1 and "Traceback" not in done.stderr
    assert "error ignored" not in done.stderr  # psycopg's note on each aborted pipeline, which Python printed raw


def test_a_restore_that_puts_rows_back_leaves_an_audit_line(
    tasks: Tasks, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = archive_old_rows(tasks, database_url, tmp_path)
    assert restore(capsys, database_url, path, "--dry-run")[0] == 0  # writes nothing: no line
    assert restore(capsys, database_url, path)[0] == 0
    assert restore(capsys, database_url, path)[0] == 0  # every row already there: no line
    (line,) = [json.loads(text) for text in Path("reaper-audit.jsonl").read_text().splitlines()]
    assert (line["mode"], line["file"], line["restored"], line["affected"]) == ("restore", str(path), ROWS, ROWS)
    assert line["outcome"] == "completed" and line["stop_reason"] is None and line["user"] and line["host"]
