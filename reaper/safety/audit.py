"""The audit trail: one JSON line per run that changed data, apart from the debug log.

Each line says when, where (host, user, process), what (mode, the settings in force), and what
came of it (per-policy counts and id ranges, the archive). The file is opened, appended to and
fsync'ed per run, so a line is either whole or absent.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

from reaper.errors import ConfigError
from reaper.formats import json_value
from reaper.policy.catalog import policy_options
from reaper.results import RunResult
from reaper.safety.restore import RestoreResult
from reaper.settings.model import Settings

# The settings a run's line records, by their flat names: every policy's (their specs'), the task
# types', and those that shape the batches, the archive and the throttle; batch_ceiling (how far
# batches may grow) and the replicas (their passwords masked) are added apart.
AUDITED_SETTINGS = (
    "table", *(option.key for option in policy_options()), "task_types",
    "batch_size", "batch_time_seconds", "sleep_seconds", "max_runtime_seconds", "archive",
    "max_load", "critical_load", "max_replica_lag_seconds", "max_pause_seconds",
)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry
        return str(os.getuid())


def _who(now: datetime, mode: str, settings: Settings) -> dict[str, Any]:
    """When, where and by whom: the start of every audit line."""
    return {
        "time": now.isoformat(),
        "host": socket.gethostname(),
        "user": _user(),
        "pid": os.getpid(),
        "mode": mode,
        "database": settings.safe_database_url,
    }


def audit_record(run: RunResult, settings: Settings, mode: str, archive: str | None) -> dict[str, Any]:
    """Return the audit line of ``run``."""
    return {
        **_who(run.now, mode, settings),
        "settings": {
            **{name: json_value(settings.value_of(name)) for name in AUDITED_SETTINGS},
            "batch_ceiling": settings.batching.ceiling,
            "replica_urls": settings.throttling.safe_replica_urls,
        },
        "policies": {
            name: {
                "action": result.action,
                "matched": result.matched,
                "affected": result.affected,
                "by_action": dict(result.done),
                "skipped": result.skipped,
                "id_range": [json_value(result.first_id), json_value(result.last_id)],
            }
            for name, result in run.policies.items()
        },
        "affected": run.affected,
        "archive": archive,
        "duration_seconds": round(run.duration_seconds, 3),
        "stop_reason": run.stop_reason,
        "throttled_seconds": round(run.throttled_seconds, 3),
        "throttle": {reason: round(seconds, 3) for reason, seconds in run.throttle.items()},
        "outcome": "failed" if run.failed else ("stopped" if run.stop_reason else "completed"),
    }


def restore_record(result: RestoreResult, settings: Settings, now: datetime, stop_reason: str | None) -> dict[str, Any]:
    """Return the audit line of a restore that put rows back (``stop_reason``: why it failed, if it did)."""
    counts = ("read", "restored", "already_present", "refused", "refused_by", "cut_short")
    return {
        **_who(now, "restore", settings),
        "table": settings.task_table.table,
        "file": result.file,
        **{name: getattr(result, name) for name in counts},
        "affected": result.restored,
        "stop_reason": stop_reason,
        "outcome": "failed" if stop_reason else "completed",
    }


def append_audit(path: Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one line to the audit log and make it durable."""
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise ConfigError(f"cannot write the audit log {str(path)!r} (REAPER_AUDIT_LOG): {exc.strerror}") from None
