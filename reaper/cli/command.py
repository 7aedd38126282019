"""The ``reaper`` command: parse flags, load settings, pick a mode, map errors to exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from loguru import logger

from reaper.cli.demo import demo_overrides, refuse_what_the_demo_cannot_honour
from reaper.cli.logs import setup_logging
from reaper.cli.manual import ProgressBars, SignalStop, confirm_deletions, count_matches
from reaper.cli.parser import UsageError, build_parser, threshold_flags
from reaper.cli.report import render_run, run_document
from reaper.clock import utcnow
from reaper.database.connection import SessionLimits, create_db_engine, database_errors, redact
from reaper.database.demo import DEMO_FILE, ensure_demo_database
from reaper.database.table import ACTIVE_STATUSES, TERMINAL_STATUSES, TaskTable, open_table
from reaper.engine.cleanup import exclusive_cleanup, run_options, why_it_failed
from reaper.engine.reap import RunOptions, run_policies
from reaper.engine.throttle import open_throttle
from reaper.errors import (
    EXIT_FAILED,
    EXIT_INDEXES_MISSING,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_OUTPUT_CLOSED,
    EXIT_USAGE,
    ConfigError,
    LockHeld,
    ReaperError,
)
from reaper.inspect.explain import explain, parse_task_id, render_explanation
from reaper.inspect.indexes import check_indexes, missing_indexes_line, plan_reports, render_index_report
from reaper.inspect.stats import collect_stats, render_report
from reaper.policy.policies import Policy, force_policy, standard_policies
from reaper.results import RunResult
from reaper.safety.audit import append_audit, restore_record
from reaper.safety.restore import RestoreResult, restore_archive
from reaper.settings.model import Settings, load_settings

__all__ = ["UsageError", "build_parser", "main"]

# -v and -vv: the log level they stand for
VERBOSITY = {1: "INFO", 2: "DEBUG"}


@dataclass(frozen=True)
class Mode:
    """What the command line asked for."""

    name: str  # once, stats, force, indexes, restore, explain, daemon
    dry_run: bool
    as_json: bool


def _mode(args: argparse.Namespace) -> Mode:
    if (args.force_status is None) != (args.older_than is None):
        raise UsageError("--force-status and --older-than go together")
    explaining = args.explain is not None
    chosen = (args.stats_only, args.once or args.force_status, args.check_indexes, args.restore, explaining)
    if sum(map(bool, chosen)) > 1:
        raise UsageError(
            "--stats-only, --check-indexes, --restore, --explain and --once/--force-status are separate modes"
        )
    if args.force_status:
        name = "force"
    elif args.stats_only:
        name = "stats"
    elif args.check_indexes:
        name = "indexes"
    elif args.restore:
        name = "restore"
    elif args.explain is not None:
        name = "explain"
    elif args.once:
        name = "once"
    else:
        name = "daemon"
    if name == "daemon" and args.json:
        raise UsageError(
            "--json goes with a one-shot mode "
            "(--once, --stats-only, --check-indexes, --force-status, --restore, --explain)"
        )
    return Mode(name=name, dry_run=args.dry_run, as_json=args.json)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {
        "database_url": args.database_url,
        "table": args.table,
        "preset": args.preset,
        **{limit.key: getattr(args, limit.key) for limit in threshold_flags().values()},
        "batch_size": args.batch_size,
        "batch_time_seconds": args.batch_time,
        "sleep_seconds": args.sleep,
        "archive": args.archive,
        "archive_dir": args.archive_dir,
        "max_runtime_seconds": args.max_runtime,
        "max_load": args.max_load,
        "critical_load": args.critical_load,
        "max_replica_lag_seconds": args.max_replica_lag,
        "replica_urls": tuple(args.replica) if args.replica else None,
        "max_pause_seconds": args.max_pause,
        "log_level": args.log_level or VERBOSITY.get(min(args.verbose, 2)),
        "log_file": args.log_file,
        "log_json": args.log_json,
    }
    return values


def _status_role(requested: str, settings: Settings) -> str:
    """Accept a role name or the configured value of one, in any casing."""
    for role, value in settings.statuses.model_dump().items():
        if requested.lower() in (role, value.lower()):
            return role
    choices = ", ".join(ACTIVE_STATUSES + TERMINAL_STATUSES)
    raise UsageError(f"--force-status: unknown status {requested!r} (choose from {choices})")


def _open_table(settings: Settings) -> TaskTable:
    limits = SessionLimits(settings.lock_timeout_seconds, settings.statement_timeout_seconds)
    engine = create_db_engine(settings.url, limits)
    with database_errors(f"cannot read table {settings.table!r} at {settings.safe_database_url}", settings.secrets):
        return open_table(engine, settings)


def _warn_missing_indexes(table: TaskTable) -> None:
    """One line for the indexes the table lacks (each is named at DEBUG, and by ``--check-indexes``)."""
    advice = check_indexes(table)
    for item in advice:
        if not item.present:
            logger.debug(f"no index on ({', '.join(item.columns)}) for {item.purpose}")
    line = missing_indexes_line(advice)
    if line is not None:
        logger.warning(line)


def _emit(mode: Mode, document: dict[str, Any], text: str) -> None:
    print(json.dumps(document, indent=2) if mode.as_json else text)


@dataclass(frozen=True)
class Job:
    """A one-shot command on the table: what was asked, the settings, the moment, and its signal handling."""

    mode: Mode
    args: argparse.Namespace
    settings: Settings
    table: TaskTable
    now: datetime
    signals: SignalStop


def _clean(job: Job) -> int:
    mode, settings, table = job.mode, job.settings, job.table
    policies: list[Policy] = standard_policies(settings)
    if mode.name == "force":
        policies = [force_policy(_status_role(job.args.force_status, settings), job.args.older_than)]
    _warn_missing_indexes(table)
    # planned from the indexes read when the table was opened, a moment ago: not read again
    options = replace(run_options(settings, mode.dry_run, stop_requested=job.signals.reason), indexes=table.indexes)
    # opened first: a load NAME the server does not know is refused before anything runs
    with open_throttle(settings.throttle, table.engine, settings.secrets) as throttle:
        if mode.dry_run:  # a dry run writes nothing: it needs no lock, never blocks a real run, is never paused
            progress = sys.stderr.isatty() and not mode.as_json
            with ProgressBars({}, progress, sys.stderr) as bars, job.signals.graceful():
                run = run_policies(table, policies, job.now, replace(options, progress=bars.advance))
        else:
            run = _real_run(job, policies, replace(options, throttle=throttle))
    if run.dry_run:
        logger.info(f"dry run finished: {run.matched} rows would be changed, none was")
    else:
        paused = f", paused {run.throttled_seconds:.1f} s for load or lag" if run.throttled_seconds else ""
        logger.info(f"cleanup finished: {run.affected} rows changed, {run.skipped} skipped{paused}")
    _emit(mode, run_document(run, policies), render_run(run, settings.safe_database_url))
    if job.signals.received is not None:
        changed = f"{run.affected} rows changed, as the audit log says" if run.affected else "nothing changed"
        return _fail(f"{job.signals.reason()}: stopped after the batch in hand ({changed})", job.signals.exit_code)
    return EXIT_OK


def _real_run(job: Job, policies: list[Policy], options: RunOptions) -> RunResult:
    """Count and confirm, then run under the lock with progress bars (see ``cleanup``); a signal
    during the run stops it after the batch in hand."""
    mode, settings, table, assume_yes = job.mode, job.settings, job.table, job.args.yes
    show_progress = sys.stderr.isatty() and not mode.as_json
    counts = count_matches(table, policies, job.now) if show_progress or not assume_yes else {}
    if counts:  # a count before the run, for the confirmation and the bars: not a dry run's "would be"
        logger.info(f"matched before the run: {', '.join(f'{name} {count}' for name, count in counts.items())}")
    confirm_deletions(counts, policies, settings.confirm_above, assume_yes, input if sys.stdin.isatty() else None)
    with ProgressBars(counts, show_progress, sys.stderr) as bars, job.signals.graceful():
        options = replace(options, progress=bars.advance)
        return exclusive_cleanup(table, policies, job.now, options, settings, mode.name)


def _restore(job: Job) -> int:
    mode, table, settings = job.mode, job.table, job.settings
    result = RestoreResult(file=str(job.args.restore), dry_run=mode.dry_run)
    try:
        restore_archive(table, job.args.restore, mode.dry_run, settings.batch_size, result)
    except BaseException as exc:  # what went back before the failure is in the audit log all the same
        _audit_restore(settings, result, job.now, why_it_failed(exc))
        raise
    _audit_restore(settings, result, job.now, None)
    verb = "would restore" if result.dry_run else "restored"
    reasons = ", ".join(f"{reason}: {count}" for reason, count in result.refused_by.items())
    text = (
        f"{result.file}: {result.read} rows read, {verb} {result.restored}, "
        f"{result.already_present} already in {table.name} (skipped)"
        + (f", {result.refused} refused by the database ({reasons})" if result.refused else "")
        + (f"; the last batch, cut short by a killed run, skipped ({result.cut_short} rows)" * bool(result.cut_short))
    )
    _emit(mode, result.to_json(), text)
    if result.refused:
        return _fail(
            f"{result.refused} rows not restored, refused by the database ({reasons}); "
            "the others were restored, and a repeated restore skips them", EXIT_FAILED
        )
    return EXIT_OK


def _audit_restore(settings: Settings, result: RestoreResult, now: datetime, failure: str | None) -> None:
    if result.restored and not result.dry_run and settings.audit_log is not None:
        stop_reason = redact(failure, settings.secrets) if failure else None
        append_audit(settings.audit_log, restore_record(result, settings, now, stop_reason))


def _run(
    mode: Mode,
    args: argparse.Namespace,
    settings: Settings,
    reload_settings: Callable[[], Settings],
    signals: SignalStop,
) -> int:
    now = utcnow()
    if args.demo:
        added = ensure_demo_database(Path.cwd() / DEMO_FILE, now)
        if added:
            logger.info(f"demo database ./{DEMO_FILE} filled with {added} tasks")
    if mode.name == "daemon":
        # imported here: the daemon's metrics, HTTP server and scheduler cost every one-shot run start-up time
        from reaper.daemon.service import run_daemon

        return run_daemon(settings, reload_settings, shadow=mode.dry_run)
    table = _open_table(settings)
    job = Job(mode, args, settings, table, now, signals)
    with database_errors(f"database error on table {settings.table!r}", settings.secrets):
        if mode.name == "restore":
            return _restore(job)
        if mode.name in ("stats", "explain", "indexes"):
            return _inspect(job)
        return _clean(job)


def _inspect(job: Job) -> int:
    """The modes that read and report: statistics, one row explained, the indexes."""
    mode, table, now = job.mode, job.table, job.now
    policies = standard_policies(job.settings)
    if mode.name == "stats":
        stats = collect_stats(table, policies, now)
        _emit(mode, stats.to_json(), render_report(stats))
        return EXIT_OK
    if mode.name == "explain":
        explanation = explain(table, policies, parse_task_id(table, job.args.explain), now)
        _emit(mode, explanation.to_json(), render_explanation(explanation))
        return EXIT_OK
    advice = check_indexes(table)
    plans = plan_reports(table, policies, now)
    document = {"indexes": [asdict(item) for item in advice], "plans": [plan.to_json() for plan in plans]}
    _emit(mode, document, render_index_report(advice, table.qualified_name, plans))
    # A deployment can be gated on it: a missing index is not an error, but it is not "all good" either.
    return EXIT_INDEXES_MISSING if any(not item.present for item in advice) else EXIT_OK


def _fail(message: str, code: int) -> int:
    print(f"reaper: error: {message}", file=sys.stderr)
    return code


def _discard_output() -> None:
    """Point stdout at the null device, so that the interpreter's last flush finds no closed pipe."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor (a test's captured stdout): nothing to flush into a pipe
        pass


def main(argv: list[str] | None = None) -> int:
    """Run the ``reaper`` command with ``argv`` and return its exit code."""
    # loguru's default handler shows variables in tracebacks; nothing may print before ours is set.
    logger.remove()
    try:
        args = build_parser().parse_args(argv)
        mode = _mode(args)
        overrides = _overrides(args)
        if args.demo:
            refuse_what_the_demo_cannot_honour(args, overrides, args.config)
            overrides.update(demo_overrides())
        settings = load_settings(overrides, args.config)
        # A person at a terminal gets the report and real problems; the daemon's log, and a log file, what it did.
        console = settings.log_level or ("INFO" if mode.name == "daemon" else "WARNING")
        setup_logging(console, settings.log_file, settings.log_json, settings.secrets, settings.log_level or "INFO")
        with SignalStop() as signals:  # the daemon sets its own handlers for its run
            return _run(mode, args, settings, lambda: load_settings(overrides, args.config), signals)
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0)
    except UsageError as exc:
        return _fail(f"{exc} (see reaper --help)", EXIT_USAGE)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except LockHeld as exc:
        print(f"reaper: skipped: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except ReaperError as exc:
        return _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt as exc:  # Ctrl-C, or a signal that stopped the command at once (Interrupted)
        return _fail(str(exc) or "interrupted", getattr(exc, "exit_code", EXIT_INTERRUPTED))
    except BrokenPipeError:  # the output's reader went away (``reaper ... | head``): stop quietly, as a pipe's tools do
        _discard_output()
        return EXIT_OUTPUT_CLOSED
    except Exception as exc:  # a bug of ours: one line for the user, the traceback for the debug log
        logger.opt(exception=exc).debug("unexpected error")
        return _fail(f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                     "(run with --log-level DEBUG for details)", EXIT_FAILED)
