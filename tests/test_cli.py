"""The command line: modes, output, exit codes, and one-line errors for every kind of bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy
from freezegun import freeze_time

import reaper
from helpers import NOW, Shape, Tasks, ago, settings_for
from reaper.cli.command import main
from reaper.database.table import open_table
from reaper.inspect.indexes import check_indexes


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *needles: str) -> None:
    errors = [line for line in err.splitlines() if line.startswith("reaper: error:")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in errors[0]


@pytest.fixture
def filled(tasks: Tasks) -> Tasks:
    tasks.add("running", started_at=ago(hours=30))
    tasks.add("pending", created_at=ago(hours=3))
    tasks.add("failure", finished_at=ago(days=8))
    tasks.add("success", finished_at=ago(days=31))
    tasks.add("success", finished_at=ago(days=1))
    return tasks


@freeze_time(NOW)
def test_once_runs_the_four_policies_and_prints_a_summary(
    filled: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "--once", "--database-url", database_url)
    assert code == 0
    assert "running_timeout" in out and "4 rows changed" in out
    assert filled.count() == 3


@freeze_time(NOW)
def test_once_json_reports_matched_and_affected_per_policy(
    filled: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "--once", "--json", "--database-url", database_url)
    document = json.loads(out)
    assert code == 0 and document["dry_run"] is False and isinstance(document["duration_seconds"], float)
    assert {name: p["affected"] for name, p in document["policies"].items()} == {
        "running_timeout": 1,
        "pending_timeout": 1,
        "failure_retention": 1,
        "success_retention": 1,
    }


@freeze_time(NOW)
def test_dry_run_json_counts_and_samples_without_writing(
    filled: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = filled.dump()
    code, out, _ = run_cli(capsys, "--once", "--dry-run", "--json", "--database-url", database_url)
    document = json.loads(out)
    assert code == 0 and document["dry_run"] is True
    assert document["policies"]["success_retention"]["matched"] == 1
    assert document["policies"]["success_retention"]["affected"] == 0
    assert len(document["policies"]["running_timeout"]["sample_ids"]) == 1
    assert filled.dump() == before


@freeze_time(NOW)
def test_threshold_flags_override_the_defaults(
    filled: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(
        capsys, "--once", "--dry-run", "--json", "--database-url", database_url, "--success-retention", "0.5"
    )
    assert code == 0 and json.loads(out)["policies"]["success_retention"]["matched"] == 2


@freeze_time(NOW)
def test_stats_only_prints_the_report_and_writes_nothing(
    filled: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = filled.dump()
    code, out, _ = run_cli(capsys, "--stats-only", "--database-url", database_url)
    assert code == 0 and "Total tasks: 5" in out and "running past timeout (>24 h): 1" in out
    code, out, _ = run_cli(capsys, "--stats-only", "--json", "--database-url", database_url)
    assert code == 0 and json.loads(out)["stale"] == {"running": 1, "pending": 1}
    assert filled.dump() == before


@freeze_time(NOW)
def test_force_status_cleans_only_that_status(
    filled: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(
        capsys, "--force-status", "success", "--older-than", "0.5", "--json", "--database-url", database_url
    )
    document = json.loads(out)
    assert code == 0 and list(document["policies"]) == ["force_success"]
    assert document["policies"]["force_success"]["affected"] == 2 and filled.count() == 3


@freeze_time(NOW)
def test_force_status_accepts_the_stored_spelling(
    tasks: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks.add("FAILURE", finished_at=ago(days=6))
    code, _, _ = run_cli(capsys, "--force-status", "FAILURE", "--older-than", "5", "--database-url", database_url)
    assert code == 0 and tasks.count() == 0


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--force-status", "failure"], "--force-status and --older-than go together"),
        (["--older-than", "3"], "--force-status and --older-than go together"),
        (["--once", "--running-timeout", "0"], "--running-timeout: must be greater than 0"),
        (["--once", "--pending-timeout", "-2"], "--pending-timeout: must be greater than 0"),
        (["--once", "--failure-retention", "week"], "--failure-retention: expected a number"),
        (["--once", "--batch-size", "0"], "--batch-size: must be at least 1"),
        (["--once", "--batch-size", "20000"], "--batch-size: must be at most 10000 rows"),
        (["--once", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["--stats-only", "--once"], "are separate modes"),
        (["--check-indexes", "--force-status", "failure", "--older-than", "1"], "are separate modes"),
        (["--once", "--sleep", "-1"], "--sleep: must be at least 0"),
        (["--once", "--max-runtime", "0"], "--max-runtime: must be greater than 0"),
        (["--json"], "--json goes with a one-shot mode"),
        (["--force-status", "exploded", "--older-than", "1"], "unknown status 'exploded'"),
        (["--once", "--demo", "--database-url", "sqlite:///x.db"], "--demo uses its own database"),
        (["--once", "--dry-rn"], "unrecognized arguments: --dry-rn; did you mean --dry-run?"),
        (["--once", "--runing-timeout", "3"], "did you mean --running-timeout?"),
        (["--once", "--batch-sise=10"], "did you mean --batch-size?"),
        (["--once", "-v", "--log-level", "DEBUG"], "not allowed with"),
    ],
)
def test_bad_usage_exits_2_with_one_line_naming_the_culprit(
    filled: Tasks, database_url: str, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    before = filled.dump()
    extra = [] if "--database-url" in argv else ["--database-url", database_url]
    code, out, err = run_cli(capsys, *argv, *extra)
    assert code == 2 and out == ""
    assert_one_line_error(err, needle)
    assert filled.dump() == before


def test_an_unknown_table_exits_2_naming_it(
    tasks: Tasks,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run_cli(capsys, "--once", "--database-url", database_url, "--table", "procesing_tasks")
    assert code == 2
    assert_one_line_error(err, "table 'procesing_tasks' not found", "processing_tasks")


def test_an_unknown_column_exits_2_naming_it_and_its_setting(
    tasks: Tasks, database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REAPER_COLUMNS__FINISHED_AT", "finished_at")
    code, _, err = run_cli(capsys, "--once", "--database-url", database_url)
    assert code == 2
    assert_one_line_error(err, "column 'finished_at' not found", "REAPER_COLUMNS__FINISHED_AT")


def test_a_timestamp_role_on_a_text_column_is_rejected(
    make_tasks: Callable[..., Tasks],
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_tasks(Shape())
    monkeypatch.setenv("REAPER_COLUMNS__UPDATED_AT", "task_type")
    code, _, err = run_cli(capsys, "--once", "--database-url", database_url)
    assert code == 2
    assert_one_line_error(err, "'task_type'", "not a date-time column")


def test_a_custom_failure_value_is_written_in_the_tables_casing(
    make_tasks: Callable[..., Tasks],
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tasks = make_tasks()
    tasks.add("running", started_at=ago(days=3))
    monkeypatch.setenv("REAPER_STATUSES__FAILURE", "failed")
    code, _, err = run_cli(capsys, "--once", "--database-url", database_url)
    assert code == 0 and tasks.status_of(1) == "failed"
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "mode",
    [
        ["--once"], ["--once", "--dry-run"], ["--stats-only"], ["--check-indexes"], ["--explain", "1"],
        ["--force-status", "success", "--older-than", "1"], ["--restore", "archive.jsonl"],
    ],
    ids=lambda mode: " ".join(mode),
)
def test_every_mode_on_a_missing_sqlite_file_exits_2_with_one_line_naming_it_and_the_demo(
    capsys: pytest.CaptureFixture[str], mode: list[str]
) -> None:
    code, out, err = run_cli(capsys, *mode, "--database-url", "sqlite:///missing.db")
    assert code == 2 and out == ""
    assert_one_line_error(err, "'missing.db' does not exist", "--database-url", "reaper --demo")
    assert len(err.splitlines()) == 1 and not Path("missing.db").exists()


@pytest.mark.slow
def test_bare_reaper_in_an_empty_folder_exits_2_at_once_naming_the_file_and_creating_nothing(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("REAPER_")}
    with socket.socket() as taken:  # were the daemon to start, it would say it cannot listen here
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env["REAPER_METRICS_PORT"] = str(taken.getsockname()[1])
        console_script = str(Path(sys.executable).parent / "reaper")  # installed beside this interpreter
        done = subprocess.run([console_script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [done.stderr.strip()] and "Traceback" not in done.stderr
    assert "SQLite database file 'reaper.db' does not exist" in done.stderr and "reaper --demo" in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("collecting", [True, False])
def test_importing_the_command_leaves_the_garbage_collector_as_it_found_it(collecting: bool) -> None:
    # the command holds collections off while its modules load; a program that imports it keeps its own setting
    program = (f"import gc\n{'' if collecting else 'gc.disable()'}\nimport reaper.cli\n"
               "print(gc.isenabled(), gc.get_freeze_count())")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == [str(collecting), "0"]  # nothing frozen: only the console script freezes


def test_the_console_script_runs_with_collections_on_and_what_it_loaded_left_out_of_them() -> None:
    # what loads lives as long as the process: frozen before collections resume, no collection walks it
    program = ("import gc, sys\nimport reaper.__main__ as entry\n"
               "loaded_before = 'reaper.cli.command' in sys.modules\nsys.argv = ['reaper', '--version']\n"
               "try:\n    entry.main_entry()\nexcept SystemExit as done:\n"
               "    print(done.code, loaded_before, gc.isenabled(), gc.get_freeze_count(), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True)
    code, loaded_before, collecting, frozen = done.stderr.split()
    assert (code, loaded_before, collecting) == ("0", "False", "True")
    assert int(frozen) > 50_000  # SQLAlchemy's, pydantic's, loguru's and reaper's objects


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_database_exits_1_without_showing_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"mysql+pymysql://app:Sup3rSecret@127.0.0.1:{closed_port()}/tasks"
    code, out, err = run_cli(capsys, "--stats-only", "--database-url", url)
    assert code == 1
    assert_one_line_error(err, "127.0.0.1")
    assert "Sup3rSecret" not in out + err


def test_an_unknown_dialect_exits_2_without_showing_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "--once", "--database-url", "oracle+nosuch://u:Sup3rSecret@h/db")
    assert code == 2
    assert_one_line_error(err, "REAPER_DATABASE_URL")
    assert "Sup3rSecret" not in out + err


@pytest.mark.parametrize("argument", ["nosuch_option=1", "connect_timeout=soon"])
def test_a_url_argument_the_driver_does_not_take_exits_2_with_one_line_before_any_change(
    filled: Tasks, database_url: str, backend: str, capsys: pytest.CaptureFixture[str], argument: str
) -> None:
    if backend == "sqlite" and argument.startswith("connect_timeout"):
        argument = "timeout=soon"  # the SQLite driver's own name for it
    before = filled.dump()
    url = database_url + ("&" if "?" in database_url else "?") + argument
    code, out, err = run_cli(capsys, "--once", "--database-url", url)
    if backend == "postgresql" and argument.startswith("connect_timeout"):  # psycopg checks values as it connects
        assert code == 1
        assert_one_line_error(err, "bad value for connect_timeout")
    else:
        assert code == 2, err
        assert_one_line_error(err, "REAPER_DATABASE_URL", argument.split("=")[0])
    assert "reaper-secret-pw" not in out + err and "Warning" not in err
    assert filled.dump() == before


def test_a_config_file_that_is_not_utf8_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "reaper.toml"
    config.write_bytes(b"running_timeout_hours = 12 # \xff\n")
    code, _, err = run_cli(capsys, "--once", "--config", str(config))
    assert code == 2
    assert_one_line_error(err, "reaper.toml", "not UTF-8")


def test_a_task_type_heartbeat_limit_without_a_heartbeat_column_exits_2_before_any_change(
    filled: Tasks, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "reaper.toml"
    config.write_text("[task_types.download]\nheartbeat_timeout_minutes = 5\n")
    before = filled.dump()
    code, _, err = run_cli(capsys, "--once", "--database-url", database_url, "--config", str(config))
    assert code == 2
    assert_one_line_error(err, "task_types.download.heartbeat_timeout_minutes", "REAPER_COLUMNS__HEARTBEAT_AT")
    assert filled.dump() == before


def test_a_bad_setting_in_the_environment_exits_2(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REAPER_SUCCESS_RETENTION_DAYS", "-3")
    code, _, err = run_cli(capsys, "--once")
    assert code == 2
    assert_one_line_error(err, "REAPER_SUCCESS_RETENTION_DAYS")


def test_an_unwritable_log_file_exits_2(tasks: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    Path("a-file").write_text("")
    code, _, err = run_cli(capsys, "--once", "--database-url", database_url, "--log-file", "a-file/sub/reaper.log")
    assert code == 2
    assert_one_line_error(err, "log file")


def log_lines(err: str) -> list[str]:
    """The log lines on stderr, without their time stamp: ``WARNING message``."""
    return [" ".join(line.split()[2:]) for line in err.splitlines() if line[:2] == "20"]


@freeze_time(NOW)
def test_a_dry_run_on_a_terminal_shows_the_report_and_one_line_for_the_missing_indexes(
    filled: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "--once", "--dry-run", "--database-url", database_url)
    assert code == 0 and "DRY RUN" in out and "4 rows would be changed" in out
    assert log_lines(err) == ["WARNING 4 recommended indexes missing: reaper --check-indexes"]


@freeze_time(NOW)
def test_one_missing_index_is_one_line_in_the_singular(
    make_tasks: Callable[..., Tasks], database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = make_tasks()
    with tasks.engine.begin() as conn:  # every recommended index but the statistics' one, on (created_at)
        for item in check_indexes(open_table(tasks.engine, settings_for(database_url))):
            if "statistics" not in item.purpose:
                conn.exec_driver_sql(item.create_statement.rstrip(";"))
    code, _, err = run_cli(capsys, "--once", "--dry-run", "--database-url", database_url)
    assert code == 0 and log_lines(err) == ["WARNING 1 recommended index missing: reaper --check-indexes"]


@freeze_time(NOW)
@pytest.mark.parametrize(
    "flags, shown, hidden",
    [
        (["-v"], ["INFO running_timeout: 1 running rows older than 24 h, 1 would be failed"], ["DEBUG plan:"]),
        (["--log-level", "INFO"], ["INFO dry run finished: 4 rows would be changed, none was"], ["DEBUG"]),
        (["-vv"], ["DEBUG plan: running_timeout: primary-key walk", "DEBUG no index on (status, started_at, id)"], []),
    ],
)
def test_verbose_flags_show_what_the_run_does_on_the_terminal(
    filled: Tasks, database_url: str, capsys: pytest.CaptureFixture[str], flags: list[str], shown: list[str],
    hidden: list[str],
) -> None:
    code, _, err = run_cli(capsys, "--once", "--dry-run", "--database-url", database_url, *flags)
    lines = log_lines(err)
    assert code == 0
    assert all(any(line.startswith(prefix) for line in lines) for prefix in shown), lines
    assert not [line for line in lines for prefix in hidden if line.startswith(prefix)]


@freeze_time(NOW)
def test_a_manual_run_logs_its_count_as_matched_and_never_as_what_would_be_done(
    filled: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "--once", "-v", "--database-url", database_url)
    lines = log_lines(err)
    assert code == 0 and "4 rows changed" in out
    assert "INFO matched before the run: running_timeout 1, pending_timeout 1, failure_retention 1, " \
        "success_retention 1" in lines
    assert not [line for line in lines if "would be" in line], lines


@freeze_time(NOW)
def test_json_thresholds_are_also_in_seconds(
    filled: Tasks, database_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "reaper.toml"
    config.write_text("[task_types.download]\nrunning_timeout_hours = 0.5\n")
    argv = ["--once", "--dry-run", "--json", "--database-url", database_url, "--config", str(config)]
    code, out, _ = run_cli(capsys, *argv)
    running = json.loads(out)["policies"]["running_timeout"]
    assert code == 0 and (running["threshold"], running["threshold_seconds"]) == ("24 h", 86400)
    assert running["rules"]["download"]["threshold_seconds"] == 1800
    assert running["rules"]["*"]["heartbeat_threshold_seconds"] is None
    code, out, _ = run_cli(capsys, "--force-status", "success", "--older-than", "1.5", "--json", "--dry-run",
                           "--database-url", database_url)
    assert json.loads(out)["policies"]["force_success"]["threshold_seconds"] == 1.5 * 86400


@freeze_time(NOW)
def test_log_file_receives_the_audit_lines(
    filled: Tasks,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, _ = run_cli(capsys, "--once", "--database-url", database_url, "--log-file", "reaper.log", "--log-json")
    lines = [json.loads(line) for line in Path("reaper.log").read_text().splitlines()]
    messages = [line["record"]["message"] for line in lines]
    assert code == 0
    assert any(message.startswith("running_timeout: failed 1 of 1 rows in batch 1 (ids 1") for message in messages)


def test_version_and_help_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.startswith(f"reaper {reaper.__version__} (Python 3.")
    assert f"SQLAlchemy {sqlalchemy.__version__}" in out and "PyMySQL " in out and "psycopg " in out
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and "--force-status" in out and "--stats-only" in out


def help_groups(text: str) -> dict[str, list[str]]:
    """The flags ``--help`` lists under each group's title."""
    groups: dict[str, list[str]] = {}
    title = ""
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            title = line[:-1]
            groups[title] = []
        elif title and line.startswith("  -"):
            groups[title].append(line.split()[0].rstrip(","))
    return groups


def test_help_groups_the_flags_by_what_a_person_wants_and_ends_with_examples_and_the_docs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # argparse wraps to the terminal's width
    code, out, _ = run_cli(capsys, "--help")
    groups = help_groups(out)
    assert code == 0 and list(groups)[1:8] == [
        "modes", "what to clean", "thresholds", "batching and load", "safety", "output", "database and settings"
    ]
    assert groups["modes"] == ["--once", "--stats-only", "--explain", "--check-indexes", "--restore"]
    assert {"--dry-run", "--yes", "--archive"} <= set(groups["safety"])
    assert {"--batch-size", "--sleep", "--max-runtime", "--max-load"} <= set(groups["batching and load"])
    assert {"--json", "-v", "--log-level"} <= set(groups["output"])
    examples = out[out.index("\nexamples:\n"):]
    assert "reaper --demo --once --dry-run" in examples and "docs/command-line.md" in examples
    assert "5 a recommended" in examples and max(map(len, out.splitlines())) <= 80


def test_demo_fills_a_database_in_the_working_directory_and_dry_runs_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--demo", "--once", "--dry-run", "--json")
    document = json.loads(out)
    assert code == 0 and Path("reaper-demo.sqlite3").is_file()
    assert document["policies"]["running_timeout"]["matched"] == 2
    assert document["policies"]["pending_timeout"]["matched"] == 5
    assert document["policies"]["failure_retention"]["matched"] > 0
    assert document["policies"]["success_retention"]["matched"] > 0


@pytest.mark.parametrize(
    "variable, value",
    [
        ("REAPER_TABLE", "jobs"), ("REAPER_TABLE_SCHEMA", "app"), ("REAPER_COLUMNS__ID", "job_id"),
        ("REAPER_COLUMNS__HEARTBEAT_AT", "beat_at"), ("REAPER_STATUSES__FAILURE", "failed"),
    ],
)
def test_the_demo_refuses_a_table_setting_of_the_environment_that_it_cannot_honour(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    code, out, err = run_cli(capsys, "--demo", "--once", "--dry-run")
    assert code == 2 and out == ""
    assert_one_line_error(err, f"{variable}={value!r}", "--demo")
    assert not Path("reaper-demo.sqlite3").exists()


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--table", "jobs"], "drop --table jobs"),
        (["--preset", "celery"], "drop --preset celery"),
        (["--config", "columns.toml"], "REAPER_COLUMNS__FINISHED_AT='done_at'"),
        (["--config", "preset.toml"], "REAPER_PRESET='celery'"),
    ],
)
def test_the_demo_refuses_a_flag_or_config_key_that_names_another_table(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    Path("columns.toml").write_text('[columns]\nfinished_at = "done_at"\n')
    Path("preset.toml").write_text('preset = "celery"\n')
    code, out, err = run_cli(capsys, "--demo", "--stats-only", *argv)
    assert code == 2 and out == ""
    assert_one_line_error(err, needle)


def test_the_demo_honours_table_settings_that_agree_with_its_own(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REAPER_TABLE", "processing_tasks")
    monkeypatch.setenv("REAPER_COLUMNS__FINISHED_AT", "completed_at")
    monkeypatch.setenv("REAPER_DATABASE_URL", "mysql+pymysql://app:Sup3rSecret@db-host/app")  # yours, unused here
    code, out, err = run_cli(capsys, "--demo", "--once", "--dry-run", "--json", "--table", "processing_tasks")
    assert code == 0, err
    assert json.loads(out)["policies"]["running_timeout"]["matched"] == 2


@pytest.mark.slow
def test_output_piped_into_a_reader_that_goes_away_ends_quietly_with_141(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("REAPER_")}
    command = [sys.executable, "-m", "reaper", "--demo", "--stats-only"]
    subprocess.run([*command, "--json"], cwd=tmp_path, env=env, capture_output=True, timeout=120, check=True)
    # as `reaper ... | head -0`: the reader has gone before reaper writes its report
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = subprocess.run(command, cwd=tmp_path, env=env, stdout=writer, stderr=subprocess.PIPE, text=True,
                              timeout=120)
    finally:
        os.close(writer)
    assert (done.returncode, done.stderr) == (141, "")  # 128 + SIGPIPE, as the shell reports `| head`'s writers


@pytest.mark.slow
def test_the_installed_command_and_python_dash_m_run_without_a_traceback(tmp_path: Path) -> None:
    console_script = str(Path(sys.executable).parent / "reaper")  # installed beside this interpreter
    for command in ([console_script], [sys.executable, "-m", "reaper"]):
        done = subprocess.run(
            [*command, "--demo", "--once", "--dry-run"], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert "running_timeout" in done.stdout and "DRY RUN" in done.stdout
        bad = subprocess.run([*command, "--once", "--batch-size", "x"], cwd=tmp_path, capture_output=True, text=True)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.splitlines()) == 1


@pytest.mark.slow
def test_a_run_stopped_by_max_runtime_says_so(
    tasks: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):
        tasks.add("success", finished_at=ago(days=40))
    # One policy, one row a batch; the first batch starts at once, and the 2 s pause after it
    # outlasts the 1 s budget, so no second batch starts.
    argv = ["--force-status", "success", "--older-than", "1", "--database-url", database_url]
    code, out, _ = run_cli(capsys, *argv, "--batch-size", "1", "--sleep", "2", "--max-runtime", "1")
    assert code == 0 and "Stopped early (max runtime of 1 s reached)" in out
    assert tasks.count() == 2


def test_a_malformed_nested_setting_exits_2_without_a_traceback_or_the_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REAPER_COLUMNS", "{bad")
    code, out, err = run_cli(capsys, "--once", "--database-url", "mysql+pymysql://u:Sup3rSecretPw@127.0.0.1:1/x")
    assert code == 2
    assert_one_line_error(err, "columns")
    assert "Sup3rSecretPw" not in out + err


def test_a_threshold_beyond_a_century_is_refused_before_anything_runs(
    filled: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = filled.dump()
    code, _, err = run_cli(capsys, "--once", "--database-url", database_url, "--success-retention", "800000")
    assert code == 2
    assert_one_line_error(err, "--success-retention: must be at most 36500 days")
    assert filled.dump() == before


def test_a_password_in_the_url_query_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"mysql+pymysql://app@127.0.0.1:{closed_port()}/tasks?password=Qu3rySecret"
    code, out, err = run_cli(capsys, "--stats-only", "--database-url", url)
    assert code == 1 and "Qu3rySecret" not in out + err


def test_the_config_file_can_be_named_in_dotenv(
    filled: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("strict.toml").write_text("success_retention_days = 0.5\n")
    Path(".env").write_text("REAPER_CONFIG_FILE=strict.toml\n")
    code, out, _ = run_cli(capsys, "--once", "--dry-run", "--json", "--database-url", database_url)
    assert code == 0 and json.loads(out)["policies"]["success_retention"]["matched"] == 2


@pytest.mark.parametrize(
    "url, code, shown",
    [
        ("mysql+pymysqll://app@127.0.0.1:1/tasks?password=Qu3rySecret", 2, "password=***"),
        ("postgresql+psycopgg://app:Qu3rySecret@127.0.0.1:1/tasks", 2, "app:***@"),
        ("sqlite:///missing.db?password=Qu3rySecret", 2, "password=***"),
        ("mysql+pymysql://app@127.0.0.1:{port}/tasks?password=Qu3rySecret", 1, "password=***"),
        ("mysql+pymysql://app@127.0.0.1:{port}/tasks?passwd=Qu3rySecret", 1, "passwd=***"),
        ("postgresql+psycopg://app@127.0.0.1:{port}/tasks?password=Qu3rySecret", 1, "password=***"),
    ],
    ids=["driver-typo", "driver-typo-user-part", "missing-sqlite-file", "mysql-query", "mysql-passwd", "pg-query"],
)
def test_every_error_that_shows_the_url_masks_its_password(
    capsys: pytest.CaptureFixture[str], url: str, code: int, shown: str
) -> None:
    url = url.format(port=closed_port())
    got, out, err = run_cli(capsys, "--stats-only", "--database-url", url)
    assert got == code
    assert_one_line_error(err, shown)
    assert "Qu3rySecret" not in out + err


@pytest.mark.parametrize("driver", ["mysql+pymysql", "postgresql+psycopg"])
def test_an_unencoded_at_sign_in_the_password_is_refused_without_showing_any_of_it(
    capsys: pytest.CaptureFixture[str], driver: str
) -> None:
    url = f"{driver}://app:Sup3r@Secret@127.0.0.1:{closed_port()}/tasks"
    code, out, err = run_cli(capsys, "--stats-only", "--database-url", url)
    assert code == 2
    assert_one_line_error(err, "REAPER_DATABASE_URL", "%40")
    assert "Sup3r" not in out + err and "Secret" not in out + err
