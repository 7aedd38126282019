"""The runs of earlier processes, read back from the audit log, so the status page keeps them across restarts.

Only runs that changed data have an audit line (see ``audit``): dry runs and runs that found
nothing leave none, so these are the last cleanups that did something. The file is read from its
end, at most ``TAIL_BYTES`` of it however long it has grown; lines of another table or database,
and lines that do not parse (a line being appended as we read), are passed over.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger

from reaper.daemon.snapshot import RECENT_RUNS_KEPT, RunRecord

TAIL_BYTES = 256 * 1024  # some hundred lines of a few settings each: more than the page keeps


def _tail_lines(path: Path, max_bytes: int) -> list[str]:
    """Return the whole lines among the last ``max_bytes`` of ``path``, oldest first."""
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        start = max(size - max_bytes, 0)
        handle.seek(start)
        data = handle.read(size - start)
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[1:] if start else lines  # read from the middle of the file, the first line is cut


def _run_record(record: Any, table: str, database: str) -> RunRecord | None:
    """The run an audit line records, or ``None`` for another table's or database's line, or a malformed one."""
    try:
        if record["database"] != database or record["settings"]["table"] != table:
            return None
        started = datetime.fromisoformat(record["time"])
        policies = record["policies"]
        counts = {str(name): (int(result["matched"]), int(result["affected"])) for name, result in policies.items()}
        duration = float(record["duration_seconds"])
        return RunRecord(
            at=(started if started.tzinfo else started.replace(tzinfo=UTC)).timestamp() + duration,
            mode="force_status" if record["mode"] == "force" else "cleanup",
            outcome="stopped" if record.get("stop_reason") else "success",
            matched=sum(matched for matched, _ in counts.values()),
            affected=int(record["affected"]),
            skipped=sum(int(result["skipped"]) for result in policies.values()),
            duration_seconds=duration,
            policies=counts,
            origin=str(record["mode"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def audit_runs(
    path: Path | None, table: str, database: str, limit: int = RECENT_RUNS_KEPT, max_bytes: int = TAIL_BYTES
) -> tuple[RunRecord, ...]:
    """Return the last ``limit`` runs on ``table`` of ``database`` (its safe URL) in the audit log, newest first."""
    if path is None:
        return ()
    try:
        lines = _tail_lines(path, max_bytes)
    except FileNotFoundError:
        return ()
    except OSError as exc:  # the page can do without them; the daemon must not stop for it
        logger.warning(f"cannot read the audit log {str(path)!r} (REAPER_AUDIT_LOG): {exc.strerror}")
        return ()
    runs: list[RunRecord] = []
    for line in reversed(lines):
        try:
            run = _run_record(json.loads(line), table, database)
        except ValueError:
            continue
        if run is not None:
            runs.append(run)
            if len(runs) == limit:
                break
    return tuple(runs)
