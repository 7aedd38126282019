"""The configured columns checked against the reflected table, before any row is read.

Each check names the column, the table and the setting to change: a column that does not exist, a
date column that holds no dates, an attempts column that is no integer, a result column that can
hold no exception, a task-type limit with no column to apply it to.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Table
from sqlalchemy.types import DateTime, Integer

from reaper.database.celery_results import CeleryFailure, result_column_fits
from reaper.errors import SchemaError
from reaper.settings.model import Settings, env_name
from reaper.settings.presets import Preset, preset_named

# The per-type limits that read a column of their own.
TYPE_LIMIT_COLUMNS = {"heartbeat_timeout_minutes": "heartbeat_at", "max_attempts": "attempts"}


def _optional_preset_roles(settings: Settings) -> set[str]:
    """The roles whose column the preset names only for the versions of the table that have it."""
    preset = preset_named(settings.preset)
    if preset is None:
        return set()
    return {role for role in preset.optional_columns if getattr(settings.columns, role) == preset.columns[role]}


def checked_columns(table: Table, settings: Settings) -> dict[str, Column[Any]]:
    """Return the configured columns by role, each checked to exist in ``table`` with a type that fits it."""
    columns: dict[str, Column[Any]] = {}
    if_present = _optional_preset_roles(settings)
    for role, name in settings.columns.present().items():
        if name not in table.columns and role in if_present:
            continue
        if name not in table.columns:
            optional = "" if role in ("id", "status", "created_at") else ", or set it empty if the table has none"
            raise SchemaError(
                f"column {name!r} not found in table {table.name!r}: "
                f"set {env_name(('columns', role))} to the right name{optional}"
            )
        columns[role] = table.columns[name]
    for role in ("created_at", "started_at", "finished_at", "updated_at", "heartbeat_at"):
        column = columns.get(role)
        if column is not None and not isinstance(column.type, DateTime):
            raise SchemaError(
                f"column {column.name!r} of table {table.name!r} ({env_name(('columns', role))}) "
                f"is {column.type}, not a date-time column"
            )
    attempts = columns.get("attempts")
    if attempts is not None and not isinstance(attempts.type, Integer):
        raise SchemaError(
            f"column {attempts.name!r} of table {table.name!r} ({env_name(('columns', 'attempts'))}) "
            f"is {attempts.type}, not an integer column"
        )
    result = columns.get("result")
    if result is not None and not result_column_fits(result):
        raise SchemaError(
            f"column {result.name!r} of table {table.name!r} ({env_name(('columns', 'result'))}) "
            f"is {result.type}, not a binary or text column"
        )
    return columns


def celery_failure(table: Table, columns: dict[str, Column[Any]], settings: Settings) -> CeleryFailure | None:
    """How a failure stores its exception, when the table has a result column."""
    result = columns.get("result")
    if result is None:
        return None
    preset: Preset | None = preset_named(settings.preset)
    content: list[Column[Any] | None] = [None, None]
    if preset is not None and preset.content_columns is not None:
        for position, name in enumerate(preset.content_columns):
            if name not in table.columns:
                raise SchemaError(
                    f"column {name!r} not found in table {table.name!r}: the {preset.name} preset writes the "
                    f"result's content type and encoding there (or set {env_name(('columns', 'result'))} empty)"
                )
            content[position] = table.columns[name]
    return CeleryFailure(result, settings.celery_result_serializer, *content)


def check_task_type_settings(table: Table, columns: dict[str, Column[Any]], settings: Settings) -> None:
    """Refuse settings the table cannot honour, before any row is read."""
    if settings.task_types and "task_type" not in columns:
        raise SchemaError(
            f"[task_types] thresholds are set but table {table.name!r} has no task-type column "
            f"({env_name(('columns', 'task_type'))} is empty)"
        )
    for name, limits in settings.task_types.items():  # a limit with no column to read would be ignored in silence
        for key, role in TYPE_LIMIT_COLUMNS.items():
            if getattr(limits, key) is not None and role not in columns:
                raise SchemaError(
                    f"task_types.{name}.{key} is set but table {table.name!r} has no {role.replace('_', '-')} "
                    f"column to apply it to ({env_name(('columns', role))} is empty)"
                )
    if settings.rescues() and "updated_at" not in columns:
        raise SchemaError(
            f"requeue needs an updated-at column to restart a requeued task's wait, and table {table.name!r} "
            f"has none ({env_name(('columns', 'updated_at'))}); use the fail action"
        )
