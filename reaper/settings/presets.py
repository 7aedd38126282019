"""Presets: the job tables applications already have, declared once (table, columns, statuses, failures).

A preset only supplies defaults: a setting given explicitly (flag, environment, ``.env``, TOML)
wins over it, key by key, so a renamed table or one column of another name needs one setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CELERY_STATUSES = {
    "pending": "PENDING",
    "running": "STARTED",
    "success": "SUCCESS",
    "failure": "FAILURE",
    "retry": "RETRY",
    "revoked": "REVOKED",
}


@dataclass(frozen=True)
class Preset:
    """One known job table: its defaults, and what a failure writes there."""

    name: str
    table: str
    columns: Mapping[str, str | None]  # every role of settings.Columns
    statuses: Mapping[str, str]
    # Roles whose column only some versions of the table have: used when the table has it, else absent.
    optional_columns: frozenset[str] = frozenset()
    # Columns that say how the result column is serialized (django-celery-results keeps them per row):
    # (content type, content encoding), written with the exception a failure stores.
    content_columns: tuple[str, str] | None = None
    # Whether the application leaves active rows without any time (Celery's backend clears date_done
    # on every write of a state that is not final), so reaper dates them when it first sees them.
    dates_undated: bool = False
    requeue_refusal: str | None = None  # why requeue is not offered, if it is not


_NO_REQUEUE = "Celery's broker holds a task's message, not the table, so setting a row back to PENDING runs nothing"

CELERY = Preset(
    name="celery",
    table="celery_taskmeta",
    columns={
        "id": "id",
        "status": "status",
        "task_type": "name",  # only with result_extended
        "created_at": "date_done",
        "started_at": None,
        "finished_at": "date_done",
        "updated_at": "date_done",
        "error": "traceback",
        "heartbeat_at": None,
        "attempts": None,
        "result": "result",
    },
    statuses=CELERY_STATUSES,
    optional_columns=frozenset({"task_type"}),
    dates_undated=True,
    requeue_refusal=_NO_REQUEUE,
)

DJANGO_CELERY_RESULTS = Preset(
    name="django-celery-results",
    table="django_celery_results_taskresult",
    columns={
        "id": "id",
        "status": "status",
        "task_type": "task_name",  # only with result_extended; null otherwise
        "created_at": "date_created",
        "started_at": "date_started",  # since django-celery-results 2.6
        "finished_at": "date_done",
        "updated_at": "date_done",  # auto_now: every save sets it
        "error": "traceback",
        "heartbeat_at": None,
        "attempts": None,
        "result": "result",
    },
    statuses=CELERY_STATUSES,
    optional_columns=frozenset({"started_at"}),
    content_columns=("content_type", "content_encoding"),
    requeue_refusal=_NO_REQUEUE,
)

PRESETS: dict[str, Preset] = {preset.name: preset for preset in (CELERY, DJANGO_CELERY_RESULTS)}


def preset_named(name: str | None) -> Preset | None:
    """Return the preset called ``name`` (``None``: no preset); ``KeyError`` for an unknown name."""
    return None if name is None else PRESETS[name]


def _under(defaults: Mapping[str, Any], given: Any) -> Any:
    """Return ``given`` (a mapping from a source, or an already built model) over ``defaults``."""
    if given is None:
        return dict(defaults)
    if isinstance(given, Mapping):
        return {**defaults, **given}
    return given  # a whole Columns or Statuses object was given: it says every role itself


def with_preset_defaults(data: dict[str, Any], preset: Preset) -> dict[str, Any]:
    """Return the raw settings ``data`` with the preset's values where no source gave one."""
    filled = dict(data)
    filled.setdefault("table", preset.table)
    filled["columns"] = _under(preset.columns, data.get("columns"))
    filled["statuses"] = _under(preset.statuses, data.get("statuses"))
    return filled
