"""``--preset django-celery-results`` with django-celery-results itself on both sides, on SQLite and
PostgreSQL: its migrations create the table, its backend stores the results, reaper runs, then its
``TaskResult`` model and Celery's ``AsyncResult`` read every row.

Django runs in processes of its own (``django_results/client.py``): it is set up once per process,
and each test has a database of its own. The backend dates a start with the database's clock, so
the rows are written now and reaper runs two hours later (in-process, under freezegun), with a
running timeout of one hour and 48 hours for ``app.tasks.long``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time

from helpers import BACKENDS
from reaper.cli.command import main

TESTS = Path(__file__).parent
TASK_TYPES = json.dumps({"app.tasks.long": {"running_timeout_hours": 48}})

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("backend", [name for name in BACKENDS if name != "mariadb"], indirect=True),
]


def client(database_url: str, *argv: str) -> str:
    """Run the django-celery-results client with ``argv``; return what it printed."""
    env = {**os.environ, "DJANGO_RESULTS_DATABASE_URL": database_url, "PYTHONPATH": str(TESTS)}
    # No timeout: waiting with one polls with time.sleep, which libfaketime (the CI run with the clock
    # moved ahead) can fail with EINVAL when the child is still exiting; the client ends by itself.
    done = subprocess.run(
        [sys.executable, "-m", "django_results.client", *argv],
        env=env, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def stored_then_reaped(database_url: str, serializer: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    moment = datetime.now(UTC)
    client(database_url, "store", serializer, moment.isoformat())
    monkeypatch.setenv("REAPER_CELERY_RESULT_SERIALIZER", serializer)
    monkeypatch.setenv("REAPER_TASK_TYPES", TASK_TYPES)
    with freeze_time(moment + timedelta(hours=2)):
        flags = ["--preset", "django-celery-results", "--database-url", database_url, "--running-timeout", "1"]
        assert main([*flags, "--once"]) == 0
    rows: dict[str, Any] = json.loads(client(database_url, "read", serializer))
    return rows


@pytest.mark.parametrize("serializer", ["json", "pickle"])
def test_the_model_and_asyncresult_read_every_row_after_reaper(
    database_url: str, monkeypatch: pytest.MonkeyPatch, serializer: str
) -> None:
    rows = stored_then_reaped(database_url, serializer, monkeypatch)

    assert sorted(rows) == sorted(
        ["zombie", "long", "young-success", "young-failure", "young-retry", "young-revoked", "young-pending"]
    )  # the old success and failure are deleted
    zombie = rows["zombie"]
    assert zombie["status"] == zombie["state"] == "FAILURE"
    module, name, message = zombie["raised"]
    assert (module, name) == ("billiard.exceptions", "WorkerLostError")
    assert message.startswith("reaper running_timeout: running for over the 1 h limit")
    assert zombie["traceback"] == message
    assert zombie["task_name"] == "app.tasks.resize"

    assert rows["long"]["state"] == "STARTED" and rows["long"]["value"] == {"pid": 7, "hostname": "worker2@host"}
    assert rows["young-success"]["value"] == {"answer": 42}
    assert rows["young-failure"]["raised"] == ["builtins", "ValueError", "boom"]
    assert rows["young-failure"]["traceback"] == "Traceback: boom"
    assert rows["young-retry"]["raised"][1:] == ["ValueError", "again"]
    assert rows["young-revoked"]["raised"][1] == "TaskRevokedError"
    assert rows["young-pending"]["state"] == "PENDING"


def test_check_indexes_reads_the_preset_table_and_its_django_indexes(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client(database_url, "store", "json", datetime.now(UTC).isoformat())
    capsys.readouterr()
    code = main(["--preset", "django-celery-results", "--database-url", database_url, "--check-indexes", "--json"])
    assert code == 5  # the migrations create (date_created) alone
    advice = {tuple(item["columns"]): item for item in json.loads(capsys.readouterr().out)["indexes"]}
    assert list(advice) == [
        ("status", "date_started", "id"),
        ("status", "date_created", "id"),
        ("status", "date_done", "id"),
        ("date_created",),
    ]
    assert advice[("date_created",)]["present"]  # the migrations create that one
    assert "ON django_celery_results_taskresult (status, date_started, id)" in advice[
        ("status", "date_started", "id")
    ]["create_statement"]
