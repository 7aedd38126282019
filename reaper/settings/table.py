"""The task table: its name, the names of its columns and statuses by role, and the preset they come from."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from reaper.settings.presets import PRESETS, with_preset_defaults


class Columns(BaseModel):
    """Column names of the task table, by role; ``None`` (an empty value) means the table has none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = "id"
    status: str = "status"
    task_type: str | None = "task_type"
    created_at: str = "created_at"
    started_at: str | None = "started_at"
    finished_at: str | None = "completed_at"
    updated_at: str | None = "updated_at"
    error: str | None = "error_message"
    heartbeat_at: str | None = None
    attempts: str | None = None
    result: str | None = None  # a failure writes a Celery exception there (see celery_results)

    @field_validator(
        "task_type", "started_at", "finished_at", "updated_at", "error", "heartbeat_at", "attempts", "result",
        mode="before",
    )
    @classmethod
    def _empty_means_absent(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("id", "status", "created_at", mode="before")
    @classmethod
    def _required(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError("this column is required and cannot be empty")
        return value.strip() if isinstance(value, str) else value

    def present(self) -> dict[str, str]:
        """Return role -> column name for the columns the table has."""
        return {role: name for role, name in self.model_dump().items() if name}


class Statuses(BaseModel):
    """The status vocabulary, by role. Matching against stored values ignores case."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pending: str = "pending"
    running: str = "running"
    success: str = "success"
    failure: str = "failure"
    retry: str = "retry"
    revoked: str = "revoked"

    @field_validator("*", mode="after")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("a status value cannot be empty")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> Statuses:
        seen: dict[str, str] = {}
        for role, value in self.model_dump().items():
            other = seen.setdefault(value.lower(), role)
            if other != role:
                raise ValueError(f"statuses {other} and {role} share the value {value!r}")
        return self


def preset_key(name: str) -> str:
    """The name of a preset as ``PRESETS`` knows it (any casing, spaces around it ignored)."""
    return name.strip().lower()


class TableSettings(BaseModel):
    """Which table, and how its columns and statuses are named; a preset fills what is not given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str | None = None  # see presets.py: defaults for a known job table
    celery_result_serializer: Literal["json", "pickle"] = "json"
    table: str = "processing_tasks"
    table_schema: str | None = None  # the table's schema (PostgreSQL) or database (MySQL); None: the default
    columns: Columns = Columns()
    statuses: Statuses = Statuses()

    @model_validator(mode="before")
    @classmethod
    def _preset_defaults(cls, data: Any) -> Any:
        # Before validation, so that only what no source gave is filled in; an unknown name is left
        # to _known_preset to report.
        if not isinstance(data, dict) or not isinstance(data.get("preset"), str):
            return data
        preset = PRESETS.get(preset_key(data["preset"]))
        return data if preset is None else with_preset_defaults(data, preset)

    @field_validator("preset", mode="before")
    @classmethod
    def _known_preset(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return None
        if preset_key(value) not in PRESETS:
            raise ValueError(f"unknown preset (choose from {', '.join(PRESETS)})")
        return preset_key(value)

    @field_validator("table", mode="after")
    @classmethod
    def _table_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the table name cannot be empty")
        return value.strip()

    @field_validator("table_schema", mode="before")
    @classmethod
    def _empty_means_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value
