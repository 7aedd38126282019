"""Reflection, status vocabularies and casing, time conversion."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Column, DateTime, Enum, Integer, MetaData, Table, create_engine
from sqlalchemy.dialects.mysql import TIMESTAMP as MySQLTimestamp

from helpers import NOW, Shape, Tasks, settings_for
from reaper.database.table import TaskTable, casings, open_table
from reaper.errors import SchemaError
from reaper.settings.model import Statuses


def enum_table(*members: str) -> TaskTable:
    table = Table(
        "processing_tasks",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("status", Enum(*members, name="task_status")),
        Column("created_at", DateTime),
    )
    columns = {"id": table.c.id, "status": table.c.status, "created_at": table.c.created_at}
    return TaskTable(create_engine("sqlite://"), table, columns, Statuses(), ZoneInfo("UTC"))


def test_casings_cover_the_spellings_applications_store() -> None:
    assert set(casings("running")) == {"running", "RUNNING", "Running"}
    assert casings("in_progress") == ["in_progress", "IN_PROGRESS", "In_progress", "In_Progress"]


def test_enum_columns_only_match_their_own_members() -> None:
    table = enum_table("PENDING", "RUNNING", "SUCCESS", "FAILURE")
    assert table.status_values("running") == ["RUNNING"]
    assert table.status_values("retry") == []


def test_the_failure_value_written_to_an_enum_is_its_member() -> None:
    table = enum_table("PENDING", "RUNNING", "SUCCESS", "FAILURE")
    with table.engine.connect() as conn:
        assert table.write_value(conn, "failure") == "FAILURE"


def test_an_enum_without_a_failure_member_is_a_schema_error_naming_the_setting() -> None:
    table = enum_table("PENDING", "RUNNING", "DONE", "ERROR")
    with table.engine.connect() as conn, pytest.raises(SchemaError, match="REAPER_STATUSES__FAILURE"):
        table.write_value(conn, "failure")


def test_an_empty_table_writes_the_configured_spelling(tasks: Tasks, database_url: str) -> None:
    table = open_table(tasks.engine, settings_for(database_url))
    with tasks.engine.connect() as conn:
        assert table.write_value(conn, "failure") == "failure"


def test_capitalised_statuses_are_written_capitalised(tasks: Tasks, database_url: str) -> None:
    tasks.add("Running")
    table = open_table(tasks.engine, settings_for(database_url))
    with tasks.engine.connect() as conn:
        assert table.write_value(conn, "failure") == "Failure"


def test_role_of_maps_any_casing_to_the_role(tasks: Tasks, database_url: str) -> None:
    table = open_table(tasks.engine, settings_for(database_url))
    assert [table.role_of(v) for v in ("SUCCESS", "Failure", "paused", None)] == [
        "success",
        "failure",
        "paused",
        "unknown",
    ]


def test_naive_values_are_converted_from_the_configured_zone(tasks: Tasks, database_url: str) -> None:
    table = open_table(tasks.engine, settings_for(database_url, database_timezone="Asia/Shanghai"))
    stored = table.to_db(NOW, table.columns["created_at"])
    assert stored == datetime(2026, 11, 29, 20, 0, 0)
    created = table.columns["created_at"]
    assert table.from_db(stored, created) == NOW
    assert table.from_db(stored, created).tzinfo == UTC  # type: ignore[union-attr]  # a stored value


def test_mysql_timestamp_values_are_read_as_utc_whatever_the_configured_zone(tasks: Tasks, database_url: str) -> None:
    table = open_table(tasks.engine, settings_for(database_url, database_timezone="Asia/Shanghai"))
    stamp = Column("stamp", MySQLTimestamp())
    assert table.from_db(datetime(2026, 11, 29, 12, 0, 0), stamp) == NOW
    assert table.to_db(NOW, stamp) == NOW


def test_text_is_cut_to_a_string_error_columns_length(make_tasks: Callable[..., Tasks], database_url: str) -> None:
    tasks = make_tasks(Shape(error_length=10))
    table = open_table(tasks.engine, settings_for(database_url, tasks.shape))
    assert table.fit_error("x" * 50) == "xxxxxxx..." and table.fit_error("ok") == "ok"


def test_task_type_thresholds_need_a_task_type_column(make_tasks: Callable[..., Tasks], database_url: str) -> None:
    columns = {role: (None if role == "task_type" else name) for role, name in Shape().columns.items()}
    tasks = make_tasks(Shape(columns=columns))
    settings = settings_for(database_url, tasks.shape, task_types={"download": {"running_timeout_hours": 1}})
    with pytest.raises(SchemaError, match="has no task-type column"):
        open_table(tasks.engine, settings)


@pytest.mark.parametrize(
    "key, column",
    [("heartbeat_timeout_minutes", "REAPER_COLUMNS__HEARTBEAT_AT"), ("max_attempts", "REAPER_COLUMNS__ATTEMPTS")],
)
def test_a_task_type_limit_whose_column_the_table_lacks_is_refused_naming_both(
    tasks: Tasks, database_url: str, key: str, column: str
) -> None:
    settings = settings_for(database_url, task_types={"download": {key: 5}})
    with pytest.raises(SchemaError) as refused:
        open_table(tasks.engine, settings)
    message = str(refused.value)
    assert f"task_types.download.{key}" in message and column in message and "\n" not in message


@pytest.mark.parametrize(
    "role, message", [("heartbeat_at", "not a date-time column"), ("attempts", "not an integer column")]
)
def test_heartbeat_and_attempts_columns_must_have_the_right_type(
    tasks: Tasks, database_url: str, role: str, message: str
) -> None:
    columns = {**tasks.shape.column_settings(), role: "error_message" if role == "heartbeat_at" else "created_at"}
    with pytest.raises(SchemaError, match=message):
        open_table(tasks.engine, settings_for(database_url, tasks.shape, columns=columns))
