"""A real (writing) pass, as both the command line and the daemon run it.

Under the one-reaper lock, with deleted rows archived as configured, and one audit line when it
changed data. Options come from the settings the same way for both callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from reaper.archive import open_archive
from reaper.audit import append_audit, audit_record
from reaper.lock import exclusive_run
from reaper.policies import Policy
from reaper.reap import RunOptions, RunResult, run_policies
from reaper.settings import Settings
from reaper.table import TaskTable


def run_options(settings: Settings, dry_run: bool, **extra: Any) -> RunOptions:
    """Return the options of a pass from the settings in force."""
    return RunOptions(
        dry_run=dry_run,
        batch_size=settings.batch_size,
        batch_time_seconds=settings.batch_time_seconds or None,
        max_batch_size=settings.batch_ceiling,
        sleep_seconds=settings.sleep_seconds,
        max_runtime_seconds=settings.max_runtime_seconds,
        max_retries=settings.max_retries,
        **extra,
    )


def exclusive_cleanup(
    table: TaskTable, policies: Sequence[Policy], now: datetime, options: RunOptions, settings: Settings, mode: str
) -> RunResult:
    """Run ``policies`` for real under the table's lock, archiving, then append the audit line."""
    with exclusive_run(table.engine, table.name) as lock:
        archive = open_archive(settings.archive, settings.archive_dir, settings.archive_table, table.table,
                               table.engine, now, table.id.name)
        run = run_policies(table, policies, now, replace(options, still_exclusive=lock.held, archive=archive))
    if run.affected and settings.audit_log is not None:
        append_audit(settings.audit_log, audit_record(run, settings, mode, archive.location if archive else None))
    return run
