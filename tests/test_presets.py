"""Presets: the defaults they give, explicit settings winning over them, what they refuse, and the
tables they describe (Celery's, created by Celery itself or in an older shape) read as they are."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
import schedule
from celery import states
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Column, DateTime, Integer, LargeBinary, MetaData, String, Table, Text, create_engine, text
from sqlalchemy.engine import Engine
from test_metrics import value

from celery_apps import TASK_NAME, celery_app, store
from helpers import NOW, ago
from reaper.cli.command import main
from reaper.daemon.loop import Daemon
from reaper.daemon.metrics import ReaperMetrics
from reaper.database.table import open_table
from reaper.errors import ConfigError, SchemaError
from reaper.settings.model import load_settings


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("reaper: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_the_celery_preset_sets_celerys_table_columns_and_states() -> None:
    settings = load_settings({"preset": "celery"})
    assert settings.table == "celery_taskmeta"
    assert settings.columns.present() == {
        "id": "id", "status": "status", "task_type": "name", "created_at": "date_done", "finished_at": "date_done",
        "updated_at": "date_done", "error": "traceback", "result": "result",
    }
    assert (settings.statuses.running, settings.statuses.failure) == ("STARTED", "FAILURE")
    assert settings.celery_result_serializer == "json"


def test_the_django_celery_results_preset_sets_its_table_and_dates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REAPER_PRESET", "django-celery-results")
    settings = load_settings()
    assert settings.table == "django_celery_results_taskresult"
    columns = settings.columns
    assert (columns.created_at, columns.started_at) == ("date_created", "date_started")
    assert columns.finished_at == columns.updated_at == "date_done"
    assert (columns.task_type, columns.error, columns.result) == ("task_name", "traceback", "result")


def test_every_setting_given_explicitly_wins_over_the_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "reaper.toml"
    config.write_text('preset = "celery"\n[columns]\ntask_type = ""\n[statuses]\nrunning = "PROGRESS"\n')
    monkeypatch.setenv("REAPER_COLUMNS__ERROR", "")
    settings = load_settings({"table": "billing_taskmeta"}, config)
    assert settings.preset == "celery" and settings.table == "billing_taskmeta"
    assert settings.columns.task_type is None and settings.columns.error is None
    assert settings.statuses.running == "PROGRESS"
    # the rest: the preset's
    assert (settings.columns.finished_at, settings.statuses.failure) == ("date_done", "FAILURE")


def test_an_unknown_preset_is_a_one_line_error_naming_the_presets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run_cli(capsys, "--preset", "rq", "--stats-only")
    assert code == 2 and "celery" in one_line_error(err) and "django-celery-results" in one_line_error(err)
    monkeypatch.setenv("REAPER_PRESET", "rq")
    code, _, err = run_cli(capsys, "--stats-only")
    assert code == 2 and "REAPER_PRESET" in one_line_error(err) and "django-celery-results" in one_line_error(err)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REAPER_RUNNING_TIMEOUT_ACTION", "requeue"),
        ("REAPER_TASK_TYPES", json.dumps({TASK_NAME: {"pending_timeout_action": "requeue"}})),
    ],
)
def test_requeue_is_refused_for_a_celery_table_with_a_one_line_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str
) -> None:
    database = tmp_path / "results.sqlite3"
    celery_app(f"sqlite:///{database}").backend  # noqa: B018 - creates the tables
    monkeypatch.setenv(variable, value)
    before = database.read_bytes()
    code, _, err = run_cli(capsys, "--preset", "celery", "--database-url", f"sqlite:///{database}", "--once")
    assert code == 2 and "the celery preset does not requeue" in one_line_error(err)
    assert "broker" in one_line_error(err)
    assert database.read_bytes() == before


def test_the_demo_keeps_its_own_table_whatever_preset_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REAPER_PRESET", "celery")
    settings = load_settings({"table": "processing_tasks", "preset": ""})  # what --demo passes
    assert settings.preset is None and settings.columns.result is None


def old_celery_table(engine: Engine) -> None:
    """Celery 3's celery_taskmeta: no extended columns (no name)."""
    columns = [
        Column("id", Integer, primary_key=True),
        Column("task_id", String(155), unique=True),
        Column("status", String(50)),
        Column("result", LargeBinary),
        Column("date_done", DateTime),
        Column("traceback", Text),
    ]
    Table("celery_taskmeta", MetaData(), *columns).create(engine)


def test_a_celery_table_without_extended_columns_is_read_without_task_types(
    database_url: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    old_celery_table(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO celery_taskmeta (task_id, status) VALUES ('a', 'STARTED')"))
    code, out, _ = run_cli(capsys, "--preset", "celery", "--database-url", database_url, "--stats-only", "--json")
    assert code == 0
    document = json.loads(out)
    assert document["by_status"]["running"] == 1 and document["by_type"] == {"unknown": 1}


def test_a_task_type_column_named_explicitly_must_exist(database_url: str, engine: Engine) -> None:
    old_celery_table(engine)
    settings = load_settings({"preset": "celery", "database_url": database_url, "columns": {"task_type": "task_name"}})
    with pytest.raises(SchemaError, match="column 'task_name' not found in table 'celery_taskmeta'"):
        open_table(engine, settings)


def test_the_django_preset_on_a_table_without_content_columns_is_refused_naming_them(
    database_url: str, engine: Engine
) -> None:
    Table(
        "django_celery_results_taskresult", MetaData(),
        Column("id", Integer, primary_key=True), Column("status", String(50)), Column("task_name", String(255)),
        Column("result", Text), Column("traceback", Text), Column("date_created", DateTime),
        Column("date_done", DateTime),
    ).create(engine)
    settings = load_settings({"preset": "django-celery-results", "database_url": database_url})
    with pytest.raises(SchemaError, match="column 'content_type' not found .* REAPER_COLUMNS__RESULT empty"):
        open_table(engine, settings)
    no_result = {"preset": "django-celery-results", "database_url": database_url, "columns": {"result": ""}}
    settings = load_settings(no_result)
    assert open_table(engine, settings).celery_failure is None


def test_a_serializer_celery_has_no_reader_for_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REAPER_CELERY_RESULT_SERIALIZER", "yaml")
    with pytest.raises(ConfigError, match="REAPER_CELERY_RESULT_SERIALIZER"):
        load_settings({"preset": "celery"})


def test_check_indexes_knows_celerys_table_and_its_date_done_index(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    celery_app(database_url).backend  # noqa: B018 - Celery creates its tables
    code, out, _ = run_cli(capsys, "--preset", "celery", "--database-url", database_url, "--check-indexes", "--json")
    advice = json.loads(out)["indexes"]
    assert code == 5  # one missing
    assert [(item["columns"], item["present"]) for item in advice] == [
        (["status", "date_done", "id"], False),  # one index serves all four policies, and the dating of STARTED rows
        (["date_done"], True),  # Celery's own
    ]
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text(advice[0]["create_statement"].rstrip(";")))
    engine.dispose()
    code, out, _ = run_cli(capsys, "--preset", "celery", "--database-url", database_url, "--check-indexes")
    assert code == 0 and "All recommended indexes are present." in out


def scraped(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_the_daemons_metrics_label_celery_rows_with_the_task_name(database_url: str) -> None:
    app = celery_app(database_url, extended=True)
    store(app, "zombie", states.STARTED, {"pid": 1})
    store(app, "done", states.SUCCESS, 1, task="app.tasks.thumbnail")
    settings = load_settings({"preset": "celery", "database_url": database_url})
    moments: list[datetime] = [ago(hours=26)]
    registry = CollectorRegistry()
    daemon = Daemon(settings, lambda: settings, ReaperMetrics(registry, "9.9.9", 50), schedule.Scheduler(),
                    clock=lambda: moments[0])
    daemon.run_pass(dry_run=False)  # dates the STARTED row
    moments[0] = NOW
    assert daemon.poll()
    found = scraped(registry)
    assert value(found, "reaper_stale_tasks", status="running", task_type=TASK_NAME, table="celery_taskmeta") == 1
    daemon.run_pass(dry_run=False)
    found = scraped(registry)
    labels = {"action": "failed", "policy": "running_timeout", "table": "celery_taskmeta"}
    reaped = value(found, "reaper_reaped_tasks_total", **labels)
    assert reaped == 1
    assert daemon.poll()
    found = scraped(registry)
    assert value(found, "reaper_tasks", status="failure", task_type=TASK_NAME, table="celery_taskmeta") == 1
    assert value(found, "reaper_tasks", status="success", task_type="app.tasks.thumbnail", table="celery_taskmeta") == 1
