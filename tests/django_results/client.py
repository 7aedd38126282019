"""django-celery-results as its users run it, in a process of its own (Django is set up once per process).

``python -m django_results.client store SERIALIZER MOMENT`` applies the migrations and stores
results of every state through the backend (``result_backend = "django-db"``), dated around MOMENT
(ISO, UTC) by freezegun; ``... read SERIALIZER`` prints, as JSON, every row of the ``TaskResult``
model and what ``AsyncResult`` reads of it.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_results.settings")

import django  # noqa: E402

django.setup()

from celery import Celery, states  # noqa: E402
from celery.exceptions import TaskRevokedError  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django_celery_results.models import TaskResult  # noqa: E402
from freezegun import freeze_time  # noqa: E402

from celery_apps import store  # noqa: E402

LONG_TASK = "app.tasks.long"


def celery_app(serializer: str) -> Any:
    app = Celery("reaper-tests", set_as_current=False)
    app.conf.update(
        result_backend="django-db",
        result_extended=True,
        result_serializer=serializer,
        accept_content=["json", serializer],
        result_accept_content=["json", serializer],
    )
    return app


def store_results(app: Any, moment: datetime) -> None:
    """Old results, two running tasks (the database dates their start: now), young results after them."""
    call_command("migrate", verbosity=0)
    with freeze_time(moment - timedelta(days=40)):
        store(app, "old-success", states.SUCCESS, 1)
        store(app, "old-failure", states.FAILURE, ValueError("old"), traceback="Traceback: old")
    with freeze_time(moment):
        store(app, "zombie", states.STARTED, {"pid": 4242, "hostname": "worker1@host"})
        store(app, "long", states.STARTED, {"pid": 7, "hostname": "worker2@host"}, task=LONG_TASK)
    with freeze_time(moment + timedelta(hours=1)):
        store(app, "young-success", states.SUCCESS, {"answer": 42})
        store(app, "young-failure", states.FAILURE, ValueError("boom"), traceback="Traceback: boom")
        store(app, "young-retry", states.RETRY, ValueError("again"))
        store(app, "young-revoked", states.REVOKED, TaskRevokedError("revoked by the user"))
        store(app, "young-pending", states.PENDING)


def _described(exc: BaseException) -> list[str]:
    return [type(exc).__module__, type(exc).__name__, str(exc)]


def read_results(app: Any) -> dict[str, Any]:
    """Every row of the model, and what AsyncResult reads (a final failure: what get() raises)."""
    found: dict[str, Any] = {}
    for row in TaskResult.objects.all():
        result = app.AsyncResult(row.task_id)
        seen: dict[str, Any] = {"status": row.status, "task_name": row.task_name, "traceback": row.traceback}
        seen["state"] = result.state
        if result.state in (states.FAILURE, states.REVOKED):
            try:
                result.get(timeout=1)
            except Exception as exc:  # what get() raised is what the test reads
                seen["raised"] = _described(exc)
        elif result.state == states.RETRY:  # not final: get() would wait
            seen["raised"] = _described(result.result)
        else:
            seen["value"] = result.result
        found[row.task_id] = seen
    return found


def main(argv: list[str]) -> None:
    command, serializer = argv[0], argv[1]
    app = celery_app(serializer)
    if command == "store":
        store_results(app, datetime.fromisoformat(argv[2]))
    else:
        print(json.dumps(read_results(app)))


if __name__ == "__main__":
    main(sys.argv[1:])
