"""A real (writing) pass, as both the command line and the daemon run it.

Under the one-reaper lock, rows that no column dates dated first where the table needs it (see
``undated``), with deleted rows archived as configured, and one audit line when it changed data or
the throttle stopped it (an overloaded server, or a pause of ``--max-pause``). Options come from the
settings the same way for both callers; each opens the run's throttle (``throttle.open_throttle``)
and passes it in the options.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from loguru import logger

from reaper.database.connection import database_errors, redact
from reaper.database.lock import exclusive_run
from reaper.database.table import TaskTable
from reaper.engine.reap import RunOptions, run_policies
from reaper.engine.undated import date_undated
from reaper.errors import ReaperError
from reaper.policy.policies import Policy
from reaper.results import RunResult
from reaper.safety.archive import Archive, open_archive
from reaper.safety.audit import append_audit, audit_record
from reaper.settings.model import Settings


def run_options(settings: Settings, dry_run: bool, **extra: Any) -> RunOptions:
    """Return the options of a pass from the settings in force."""
    batching = settings.batching
    return RunOptions(
        dry_run=dry_run,
        batch_size=batching.batch_size,
        batch_time_seconds=batching.batch_time_seconds or None,
        max_batch_size=batching.ceiling,
        sleep_seconds=batching.sleep_seconds,
        max_runtime_seconds=batching.max_runtime_seconds,
        max_retries=batching.max_retries,
        **extra,
    )


def exclusive_cleanup(
    table: TaskTable, policies: Sequence[Policy], now: datetime, options: RunOptions, settings: Settings, mode: str
) -> RunResult:
    """Run ``policies`` for real under the table's lock, archiving, then append the audit line.

    A pass that fails or is interrupted half-way (a connection killed, a server restarted, a missing
    grant, a full disk, a second signal) still leaves its audit line, with what its committed batches
    changed and why it ended, before the error goes on.
    """
    run = RunResult(dry_run=False, now=now, policies={})
    archive: Archive | None = None
    started = options.timer()
    try:
        with database_errors(), exclusive_run(table.engine, table.qualified_name) as lock:
            date_undated(table, [policy.status for policy in policies], now, options.batch_size)
            safety = settings.safety
            archive = open_archive(safety.archive, safety.archive_dir, safety.archive_table, table.table,
                                   table.engine, now, table.id.name)
            run_policies(table, policies, now, replace(options, still_exclusive=lock.held, archive=archive), run)
    except BaseException as exc:
        run.failed, run.stop_reason = True, redact(why_it_failed(exc), settings.secrets)
        run.duration_seconds = options.timer() - started
        if run.affected:
            logger.warning(f"the run ended after changing {run.affected} rows ({run.stop_reason}); "
                           "its audit line says which")
        try:
            _audit(run, settings, mode, archive, options)
        except ReaperError as audit_error:  # the run's own error matters more: say this one, raise that one
            logger.error(f"the audit line of the failed run was not written: {audit_error}")
        raise
    _audit(run, settings, mode, archive, options)
    return run


def why_it_failed(exc: BaseException) -> str:
    """One line on why a pass ended on ``exc``: a signal, or the error (a database's: the driver's own message)."""
    if isinstance(exc, KeyboardInterrupt):
        return f"{exc or 'interrupted by SIGINT'}, during a batch (rolled back)"
    text = str(exc).strip() or type(exc).__name__
    return f"failed: {text.splitlines()[0]}"


def _audit(run: RunResult, settings: Settings, mode: str, archive: Archive | None, options: RunOptions) -> None:
    stopped_by_throttle = options.throttle is not None and options.throttle.stop_reason is not None
    audit_log = settings.safety.audit_log
    if (run.affected or stopped_by_throttle) and audit_log is not None:
        append_audit(audit_log, audit_record(run, settings, mode, archive.location if archive else None))
