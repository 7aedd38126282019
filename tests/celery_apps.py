"""Celery itself as the client of a result table: an app whose SQLAlchemy result backend (``db+URL``)
writes and reads the test database, and results stored through it as a worker stores them.

No broker and no worker: only the result backend matters, so results are stored with the backend's
``store_result``, as Celery's own backend tests do, with a request that says what a worker's says.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.app.task import Context

TASK_NAME = "app.tasks.resize"


def celery_app(
    database_url: str, extended: bool = False, serializer: str = "json", table: str | None = None,
    schema: str | None = None,
) -> Any:
    """Return a Celery app whose result backend is the test database (tables created at start); ``table``
    and ``schema`` are Celery's ``database_table_names`` and ``database_table_schemas`` for its task table."""
    app = Celery("reaper-tests", set_as_current=False)
    app.conf.update(
        result_backend=f"db+{database_url}",
        result_extended=extended,
        result_serializer=serializer,
        accept_content=["json", serializer],
        result_accept_content=["json", serializer],
        database_create_tables_at_setup=True,
        database_table_names={"task": table} if table else {},
        database_table_schemas={"task": schema} if schema else {},
    )
    return app


def store(app: Any, task_id: str, state: str, result: Any = None, traceback: str | None = None,
          task: str = TASK_NAME) -> None:
    """Store ``result`` in ``state`` for ``task_id`` as a worker running ``task`` would."""
    request = Context(
        id=task_id, task=task, args=[1, 2], kwargs={"size": "large"}, hostname="worker1@host",
        retries=0, delivery_info={"routing_key": "celery"},
    )
    app.backend.store_result(task_id, result, state, traceback=traceback, request=request)
