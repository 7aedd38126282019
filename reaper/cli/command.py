"""The ``reaper`` command: parse flags, load settings, pick a mode, map errors to exit codes."""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

import sqlalchemy
from loguru import logger

from reaper import __version__
from reaper.cli.logs import setup_logging
from reaper.cli.manual import ProgressBars, SignalStop, confirm_deletions, count_matches
from reaper.cli.report import render_run
from reaper.clock import utcnow
from reaper.database.connection import SessionLimits, create_db_engine, database_errors, redact
from reaper.database.demo import DEMO_FILE, ensure_demo_database
from reaper.database.table import ACTIVE_STATUSES, TERMINAL_STATUSES, TaskTable, open_table
from reaper.engine.cleanup import exclusive_cleanup, run_options, why_it_failed
from reaper.engine.reap import RunOptions, run_policies
from reaper.engine.sizing import MAX_ID_LIST
from reaper.engine.throttle import open_throttle, parse_spec
from reaper.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_USAGE,
    ConfigError,
    LockHeld,
    ReaperError,
)
from reaper.inspect.explain import explain, parse_task_id, render_explanation
from reaper.inspect.indexes import check_indexes, plan_reports, render_index_report
from reaper.inspect.stats import collect_stats, render_report
from reaper.policy.policies import Policy, force_policy, standard_policies
from reaper.results import RunResult
from reaper.safety.audit import append_audit, restore_record
from reaper.safety.restore import RestoreResult, restore_archive
from reaper.settings.model import MAX_DAYS, Columns, Settings, Statuses, load_settings
from reaper.settings.presets import PRESETS


class UsageError(Exception):
    """The command line itself is wrong."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _number(low: float, at_least: bool = False, high: float = math.inf, unit: str = "", whole: bool = False) -> Any:
    """Return an argparse type: a number above ``low`` (or at least it) and at most ``high``."""

    def parse(text: str) -> float:
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {'whole ' if whole else ''}number, got {text!r}") from None
        if math.isnan(value) or (value < low if at_least else value <= low):
            raise argparse.ArgumentTypeError(
                f"must be {'at least' if at_least else 'greater than'} {low:g}, got {text!r}"
            )
        if value > high or math.isinf(value):
            raise argparse.ArgumentTypeError(f"must be at most {high:g}{unit}, got {text!r}")
        return value

    return parse


_hours = _number(0, high=MAX_DAYS * 24, unit=" hours")
_days = _number(0, high=MAX_DAYS, unit=" days")
_seconds = _number(0)
_pause = _number(0, at_least=True, high=3600, unit=" seconds")
_batch_size = _number(1, at_least=True, whole=True, high=MAX_ID_LIST, unit=" rows")
_batch_time = _number(0, at_least=True, high=60, unit=" seconds")
_day_of_seconds = _number(0, high=86400, unit=" seconds")


def _load_spec(text: str) -> str:
    """An argparse type: a load SPEC, NAME=VALUE[,NAME=VALUE...] (names are checked against the database later)."""
    try:
        parse_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def version_text() -> str:
    """What ``--version`` prints: reaper's version and those of Python, SQLAlchemy and the drivers."""
    drivers = []
    for distribution in ("PyMySQL", "psycopg"):
        try:
            drivers.append(f"{distribution} {metadata.version(distribution)}")
        except metadata.PackageNotFoundError:
            drivers.append(f"{distribution} not installed")
    return (
        f"reaper {__version__} (Python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, "
        f"{', '.join(drivers)})"
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``reaper`` command."""
    parser = _Parser(
        prog="reaper",
        description="Find and clean zombie and expired rows in a background-job table.",
        epilog="Settings also come from REAPER_* environment variables, .env and a TOML file; flags win.",
    )
    modes = parser.add_argument_group(
        "modes (without one of --once, --stats-only, --check-indexes, --force-status, --restore, --explain: the daemon)"
    )
    modes.add_argument("--once", action="store_true", help="run the four policies once and exit")
    modes.add_argument("--stats-only", action="store_true", help="print the table's statistics; write nothing")
    modes.add_argument("--force-status", metavar="S", help="clean only status S (needs --older-than)")
    modes.add_argument("--older-than", metavar="D", type=_days, help="age in days for --force-status")
    modes.add_argument("--dry-run", action="store_true", help="select and count, write nothing (daemon: shadow mode)")
    modes.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    modes.add_argument("--check-indexes", action="store_true", help="report the recommended indexes; change nothing")
    modes.add_argument("--restore", metavar="FILE", type=Path, help="put the rows of an archive file back")
    modes.add_argument(
        "--explain", metavar="ID", help="say which policy and threshold apply to row ID, and what a run would do"
    )
    modes.add_argument(
        "--yes", action="store_true", help="confirm a run that deletes more than REAPER_CONFIRM_ABOVE rows"
    )
    modes.add_argument("--demo", action="store_true", help=f"use (and fill) the demo database ./{DEMO_FILE}")
    limits = parser.add_argument_group("thresholds")
    limits.add_argument("--running-timeout", metavar="H", type=_hours, help="hours (default 24)")
    limits.add_argument("--pending-timeout", metavar="H", type=_hours, help="hours (default 2)")
    limits.add_argument("--failure-retention", metavar="D", type=_days, help="days (default 7)")
    limits.add_argument("--success-retention", metavar="D", type=_days, help="days (default 30)")
    limits.add_argument("--batch-size", metavar="N", type=_batch_size,
                        help="the most rows per transaction (default: 1000 at first, then adapted to --batch-time)")
    limits.add_argument("--batch-time", metavar="S", type=_batch_time,
                        help="target seconds per write transaction: slower batches shrink (default 0.25; 0 fixed)")
    limits.add_argument("--sleep", metavar="S", type=_pause, help="seconds to pause between batches")
    limits.add_argument("--max-runtime", metavar="S", type=_seconds, help="stop a run after S seconds")
    busy = parser.add_argument_group("a busy server: pause or stop a run on the server's own load and on replica lag")
    busy.add_argument("--max-load", metavar="SPEC", type=_load_spec,
                      help="NAME=VALUE[,...]: pause while any is above (e.g. Threads_running=25)")
    busy.add_argument("--critical-load", metavar="SPEC", type=_load_spec,
                      help="NAME=VALUE[,...]: stop the run, writing nothing more, while any is above")
    busy.add_argument("--max-replica-lag", metavar="S", type=_day_of_seconds,
                      help="pause while a replica lags more than S seconds, or shows no lag")
    busy.add_argument("--replica", metavar="URL", action="append",
                      help="a replica to watch (repeatable; PostgreSQL without one: the primary's standbys)")
    busy.add_argument("--max-pause", metavar="S", type=_day_of_seconds,
                      help="stop a run that has paused S seconds in a row (default 600)")
    where = parser.add_argument_group("database, configuration and logs")
    where.add_argument("--database-url", metavar="URL", help="SQLAlchemy URL (default sqlite:///reaper.database.connection)")
    where.add_argument("--table", metavar="NAME", help="table name (default processing_tasks)")
    where.add_argument(
        "--preset", metavar="NAME", choices=tuple(PRESETS),
        help=f"defaults for a known job table: {', '.join(PRESETS)} (explicit settings win)",
    )
    where.add_argument("--config", metavar="FILE", type=Path, help="TOML settings file")
    where.add_argument("--archive", choices=("jsonl", "table", "none"), help="keep deleted rows (default none)")
    where.add_argument(
        "--archive-dir", metavar="DIR", type=Path, help="where jsonl archives go (default reaper-archive)"
    )
    where.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO (default), WARNING, ERROR")
    where.add_argument("--log-file", metavar="FILE", type=Path, help="also log to FILE, rotated")
    where.add_argument("--log-json", action="store_true", default=None, help="log JSON lines")
    parser.add_argument("--version", action="version", version=version_text())
    return parser


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
    if args.demo and args.database_url:
        raise UsageError("--demo uses its own database; drop --database-url")
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
        "running_timeout_hours": args.running_timeout,
        "pending_timeout_hours": args.pending_timeout,
        "failure_retention_days": args.failure_retention,
        "success_retention_days": args.success_retention,
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
        "log_level": args.log_level,
        "log_file": args.log_file,
        "log_json": args.log_json,
    }
    if args.demo:
        # The demo's own table, whatever the environment says about the user's table.
        demo = Path.cwd() / DEMO_FILE
        values.update(
            database_url=f"sqlite:///{demo}", table="processing_tasks", columns=Columns(), statuses=Statuses(),
            preset="",  # none
        )
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
    for advice in check_indexes(table):
        if not advice.present:
            logger.warning(
                f"no index on ({', '.join(advice.columns)}) for {advice.purpose}: see reaper --check-indexes"
            )


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
    options = run_options(settings, mode.dry_run, stop_requested=job.signals.reason)
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
    _emit(mode, run.to_json(), render_run(run, settings.safe_database_url))
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
        if mode.name == "stats":
            stats = collect_stats(table, standard_policies(settings), now)
            _emit(mode, stats.to_json(), render_report(stats))
            return EXIT_OK
        if mode.name == "restore":
            return _restore(job)
        if mode.name == "explain":
            found = explain(table, standard_policies(settings), parse_task_id(table, args.explain), now)
            _emit(mode, found.to_json(), render_explanation(found))
            return EXIT_OK
        if mode.name == "indexes":
            advice = check_indexes(table)
            plans = plan_reports(table, standard_policies(settings), now)
            document = {"indexes": [asdict(item) for item in advice], "plans": [plan.to_json() for plan in plans]}
            _emit(mode, document, render_index_report(advice, table.qualified_name, plans))
            return EXIT_OK
        return _clean(job)


def _fail(message: str, code: int) -> int:
    print(f"reaper: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the ``reaper`` command with ``argv`` and return its exit code."""
    # loguru's default handler shows variables in tracebacks; nothing may print before ours is set.
    logger.remove()
    try:
        args = build_parser().parse_args(argv)
        mode = _mode(args)
        overrides = _overrides(args)
        settings = load_settings(overrides, args.config)
        setup_logging(settings.log_level, settings.log_file, settings.log_json, settings.secrets)
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
    except Exception as exc:  # a bug of ours: one line for the user, the traceback for the debug log
        logger.opt(exception=exc).debug("unexpected error")
        return _fail(f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                     "(run with --log-level DEBUG for details)", EXIT_FAILED)


def main_entry() -> NoReturn:
    """Console-script entry point."""
    sys.exit(main())
