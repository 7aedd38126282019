"""``--preset celery`` with Celery itself on both sides: its SQLAlchemy result backend writes the
results, reaper runs, and Celery reads every row back (states, results, the reaped zombie's exception).

Celery writes its dates from the clock that freezegun sets; reaper runs in-process under it too. A
``STARTED`` row has no ``date_done`` (Celery clears it for a state that is not final), so the first
run dates it and the run a day later fails it.
"""

from __future__ import annotations

import json
import pickle
import pickletools
from datetime import timedelta
from typing import Any

import pytest
from billiard.exceptions import WorkerLostError
from celery import states
from celery.exceptions import TaskRevokedError
from freezegun import freeze_time
from sqlalchemy import MetaData, Table, create_engine, select, text

from celery_apps import TASK_NAME, celery_app, store
from helpers import BACKENDS, NOW, ago
from reaper.cli.command import main
from reaper.database.celery_results import serialize_exception


def reap(database_url: str, *flags: str) -> None:
    code = main(["--preset", "celery", "--database-url", database_url, "--once", *flags])
    assert code == 0


def reap_twice(database_url: str, *flags: str) -> None:
    """A run that dates the undated rows, then the run after the running timeout (24 h) has passed."""
    with freeze_time(ago(hours=26)):
        reap(database_url, *flags)
    with freeze_time(NOW):
        reap(database_url, *flags)


def fill(app: Any) -> None:
    """Results of every state, old and young, zombies included, as Celery's backend stores them."""
    with freeze_time(ago(days=40)):
        store(app, "old-success", states.SUCCESS, 1)
        store(app, "old-failure", states.FAILURE, ValueError("old"), traceback="Traceback: old")
    with freeze_time(ago(hours=30)):
        store(app, "zombie", states.STARTED, {"pid": 4242, "hostname": "worker1@host"})
        store(app, "stuck-pending", states.PENDING)


def fill_young(app: Any) -> None:
    with freeze_time(ago(hours=1)):
        store(app, "young-success", states.SUCCESS, {"answer": 42})
        store(app, "young-failure", states.FAILURE, ValueError("boom"), traceback="Traceback: boom")
        store(app, "young-started", states.STARTED, {"pid": 7, "hostname": "worker2@host"})
        store(app, "young-retry", states.RETRY, ValueError("again"))
        store(app, "young-revoked", states.REVOKED, TaskRevokedError("revoked by the user"))


@pytest.mark.parametrize("extended", [False, True], ids=["plain", "extended"])
@pytest.mark.parametrize("serializer", ["json", "pickle"])
def test_celery_reads_every_row_after_reaper_and_the_zombie_raises_the_written_exception(
    database_url: str, monkeypatch: pytest.MonkeyPatch, extended: bool, serializer: str
) -> None:
    monkeypatch.setenv("REAPER_CELERY_RESULT_SERIALIZER", serializer)
    app = celery_app(database_url, extended, serializer)
    fill(app)
    with freeze_time(ago(hours=26)):
        reap(database_url)
    fill_young(app)
    with freeze_time(NOW):
        reap(database_url)

    zombie = app.AsyncResult("zombie")
    assert zombie.state == states.FAILURE
    written = r"^reaper running_timeout: running for over the 24 h limit \(date_done before 2026-11-28 12:00:00 UTC\)"
    with pytest.raises(WorkerLostError, match=written):
        zombie.get(timeout=1)
    assert zombie.traceback.startswith("reaper running_timeout: running for over the 24 h limit")
    assert zombie.date_done is not None
    with pytest.raises(TimeoutError, match="^reaper pending_timeout"):
        app.AsyncResult("stuck-pending").get(timeout=1)

    for gone in ("old-success", "old-failure"):  # deleted: Celery knows nothing of them any more
        assert app.AsyncResult(gone).state == states.PENDING
    assert app.AsyncResult("young-success").get(timeout=1) == {"answer": 42}
    with pytest.raises(ValueError, match="^boom$"):
        app.AsyncResult("young-failure").get(timeout=1)
    assert app.AsyncResult("young-failure").traceback == "Traceback: boom"
    started = app.AsyncResult("young-started")
    assert (started.state, started.result) == (states.STARTED, {"pid": 7, "hostname": "worker2@host"})
    assert app.AsyncResult("young-retry").state == states.RETRY
    assert str(app.AsyncResult("young-retry").result) == "again"
    assert isinstance(app.AsyncResult("young-revoked").result, TaskRevokedError)
    if extended:
        assert app.AsyncResult("zombie").name == TASK_NAME  # the other extended fields are left as they were
        assert app.AsyncResult("zombie").args == [1, 2]


def test_the_task_type_is_celerys_task_name_with_extended_results(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    app = celery_app(database_url, extended=True)
    fill(app)
    store(app, "thumbnail", states.SUCCESS, 1, task="app.tasks.thumbnail")
    capsys.readouterr()
    assert main(["--preset", "celery", "--database-url", database_url, "--stats-only", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["table"] == "celery_taskmeta"
    assert document["by_type"] == {TASK_NAME: 4, "app.tasks.thumbnail": 1}
    assert document["by_status"]["running"] == 1 and document["by_status"]["success"] == 2


def test_a_renamed_table_needs_only_the_table_setting(database_url: str) -> None:
    app = celery_app(database_url, table="billing_taskmeta")  # Celery's database_table_names
    fill(app)
    reap_twice(database_url, "--table", "billing_taskmeta")
    with pytest.raises(WorkerLostError, match="^reaper running_timeout"):
        app.AsyncResult("zombie").get(timeout=1)
    assert app.AsyncResult("old-success").state == states.PENDING


@pytest.mark.parametrize("backend", [name for name in BACKENDS if name == "postgresql"], indirect=True)
def test_a_table_in_a_schema_of_its_own_needs_only_the_schema_setting(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA results"))
    engine.dispose()
    app = celery_app(database_url, schema="results")  # Celery's database_table_schemas
    fill(app)
    monkeypatch.setenv("REAPER_TABLE_SCHEMA", "results")
    reap_twice(database_url)
    with pytest.raises(WorkerLostError, match="^reaper running_timeout"):
        app.AsyncResult("zombie").get(timeout=1)
    capsys.readouterr()
    assert main(["--preset", "celery", "--database-url", database_url, "--check-indexes"]) == 5  # some missing
    report = capsys.readouterr().out
    assert "on results.celery_taskmeta:" in report and "present  (date_done)" in report
    assert "ON results.celery_taskmeta (status, date_done, id);" in report


def test_a_schema_that_does_not_exist_is_a_one_line_error_naming_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    celery_app(database_url).backend  # noqa: B018 - Celery creates its tables
    monkeypatch.setenv("REAPER_TABLE_SCHEMA", "reslts")
    capsys.readouterr()
    assert main(["--preset", "celery", "--database-url", database_url, "--stats-only"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("reaper: error:")]
    assert len(errors) == 1 and "schema 'reslts' not found" in errors[0] and "REAPER_TABLE_SCHEMA" in errors[0]


def test_a_zombie_is_dated_by_the_first_real_run_and_not_by_a_dry_run(database_url: str) -> None:
    app = celery_app(database_url)
    fill(app)
    with freeze_time(ago(hours=26)):
        reap(database_url, "--dry-run")
    with freeze_time(NOW):
        reap(database_url)
    zombie = app.AsyncResult("zombie")
    assert zombie.state == states.STARTED  # the dry run wrote nothing, so the real run only dated it
    with freeze_time(NOW + timedelta(hours=25)):
        reap(database_url)
    assert zombie.state == states.FAILURE


def test_a_task_started_again_after_it_was_dated_gets_its_full_timeout_again(database_url: str) -> None:
    app = celery_app(database_url)
    fill(app)
    with freeze_time(ago(hours=26)):
        reap(database_url)
    with freeze_time(ago(hours=2)):  # redelivered to another worker: Celery writes STARTED again, date_done empty
        store(app, "zombie", states.STARTED, {"pid": 9, "hostname": "worker3@host"})
    with freeze_time(NOW):
        reap(database_url)
    assert app.AsyncResult("zombie").state == states.STARTED


def test_a_failure_is_written_in_the_table_celerys_json_serializer_writes(database_url: str) -> None:
    app = celery_app(database_url)
    fill(app)
    reap_twice(database_url)
    engine = create_engine(database_url)
    table = Table("celery_taskmeta", MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        stored = conn.execute(select(table.c.result).where(table.c.task_id == "zombie")).scalar_one()
    engine.dispose()
    document = json.loads(bytes(stored))
    assert document["exc_type"] == "WorkerLostError" and document["exc_module"] == "billiard.exceptions"
    assert document["exc_message"][0].startswith("reaper running_timeout:")


def test_the_pickled_exception_is_the_one_pickle_makes_of_it() -> None:
    message = "reaper running_timeout: running for over the 24 h limit"
    pickled = pickletools.optimize(pickle.dumps(WorkerLostError(message), protocol=2))  # without its memo
    assert serialize_exception("pickle", "running", message) == pickled
    assert pickle.loads(serialize_exception("pickle", "pending", message)).args == (message,)
