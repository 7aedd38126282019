"""Dating the active rows no column dates (Celery's STARTED rows): only rows still undated, never a
row Celery wrote in between, and nothing on a table whose rows carry their own dates."""

from __future__ import annotations

from typing import Any

from celery import states
from freezegun import freeze_time
from sqlalchemy import event, select
from sqlalchemy.engine import make_url

from celery_apps import celery_app, store
from helpers import NOW, Tasks, ago, settings_for
from reaper.database.connection import create_db_engine
from reaper.database.table import open_table
from reaper.engine.undated import date_undated
from reaper.settings.model import load_settings


def test_celery_finishing_a_task_between_the_read_and_the_dating_keeps_its_result_and_date(database_url: str) -> None:
    app = celery_app(database_url)
    store(app, "finishing", states.STARTED, {"pid": 1})
    store(app, "zombie", states.STARTED, {"pid": 2})
    engine = create_db_engine(make_url(database_url))
    table = open_table(engine, load_settings({"preset": "celery", "database_url": database_url}))
    done: list[bool] = []

    def finish_first(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not done and statement.lstrip().upper().startswith("UPDATE"):
            done.append(True)
            with freeze_time(ago(minutes=5)):
                store(app, "finishing", states.SUCCESS, 42)

    event.listen(engine, "before_cursor_execute", finish_first)
    assert date_undated(table, ["running", "pending"], NOW, 1000) == {"running": 1, "pending": 0}
    with engine.connect() as conn:
        dates = dict(conn.execute(select(table.table.c.task_id, table.table.c.date_done)).all())
    engine.dispose()
    assert app.AsyncResult("finishing").get(timeout=1) == 42
    assert dates["finishing"] == ago(minutes=5).replace(tzinfo=None)  # Celery's date, not reaper's
    assert dates["zombie"] == NOW.replace(tzinfo=None)


def test_a_table_without_a_preset_that_dates_rows_is_never_dated(tasks: Tasks, database_url: str) -> None:
    undated = tasks.add("running", created_at=None)
    table = open_table(tasks.engine, settings_for(database_url))
    assert date_undated(table, ["running"], NOW, 1000) == {}
    row = tasks.get(undated)
    assert row is not None and row["created_at"] is None and row["updated_at"] is None
