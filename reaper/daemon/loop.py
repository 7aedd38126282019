"""The long-running daemon: a schedule loop of its own, a statistics poller, and metrics over HTTP.

Jobs (on a ``schedule.Scheduler`` of our own, never the module-level one):
- every day at ``dry_run_at``: a dry run; at ``cleanup_at``: the cleanup (a dry run too in shadow
  mode); both in ``timezone``, each in a thread of its own so that the loop keeps ticking; a
  cleanup that fails is tried again after 1, 2, 4 ... min, for up to ``cleanup_retry_hours``;
- every ``rescue_interval_seconds`` (unless 0): a rescue, the policies that find zombies alone,
  under the same one-reaper lock (a dry run in shadow mode), so that zombies do not wait for the
  night; the retention purges run at ``cleanup_at`` only;
- every ``reload_interval_minutes`` (counted from start-up) and on SIGHUP: reload the settings;
- a poller thread refreshes the statistics every ``stats_interval_seconds``, the first time before
  the HTTP server starts, and backs off (1 s, 2 s, 4 s ... up to a minute) while the database fails;
  it counts the active statuses every time and the others (a full scan) every
  ``totals_interval_seconds``, and again after a cleanup or when the database changes.
Every job is guarded: an exception is logged and counted, never fatal, and a job still running
when it comes due again is skipped, not started twice. SIGTERM and SIGINT stop the loop; a run in
progress finishes the batch in hand and stops.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import schedule
from loguru import logger
from sqlalchemy.engine import Engine

from reaper.clock import utcnow
from reaper.daemon.jobs import Jobs
from reaper.daemon.metrics import ReaperMetrics, run_mode
from reaper.daemon.retry import CleanupRetry, next_retry
from reaper.database.connection import SessionLimits, create_db_engine, database_errors
from reaper.database.table import TaskTable, check_fit, open_table
from reaper.engine.cleanup import exclusive_cleanup, run_options
from reaper.engine.reap import run_policies
from reaper.engine.throttle import open_throttle
from reaper.errors import ConfigError, DatabaseError, LockHeld, ReaperError
from reaper.inspect.indexes import check_indexes, missing_indexes_line
from reaper.inspect.stats import Totals, poll_stats
from reaper.policy.catalog import action_keys, zombie_specs
from reaper.policy.policies import standard_policies
from reaper.results import RunResult
from reaper.settings.database import DatabaseSettings
from reaper.settings.model import Settings
from reaper.settings.table import TableSettings

TICK_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 60.0
# A rescue runs the policies that find zombies; the retention purges wait for the nightly cleanup.
RESCUE_POLICIES = frozenset(spec.name for spec in zombie_specs())
SHUTDOWN_GRACE_SECONDS = 10.0
DATABASE_KEYS = {
    # The engine's session limits, and the table with what a failure writes and whether undated rows
    # are dated (TaskTable).
    *DatabaseSettings.model_fields, *TableSettings.model_fields,
    # Whether some policy requeues decides how pending rows are dated (TaskTable.pending_since_update).
    "task_types", *action_keys(),
}
SCHEDULE_KEYS = {"dry_run_at", "cleanup_at", "timezone", "reload_interval_minutes", "rescue_interval_seconds"}
RESTART_KEYS = {"metrics_host", "metrics_port", "metrics_certfile", "metrics_keyfile", "metrics_client_cafile"}


def _engine_for(settings: Settings) -> Engine:
    limits = SessionLimits(settings.database.lock_timeout_seconds, settings.database.statement_timeout_seconds)
    return create_db_engine(settings.url, limits)


def backoff_seconds(failures: int, interval: float) -> float:
    """Return the wait before the next poll: the interval when healthy, else 1, 2, 4 ... s up to a minute."""
    if failures == 0:
        return interval
    return float(min(2 ** (failures - 1), MAX_BACKOFF_SECONDS))


class Daemon:
    """The scheduled jobs, their guards, and the state they share."""

    def __init__(
        self,
        settings: Settings,
        reload_settings: Callable[[], Settings],
        metrics: ReaperMetrics,
        scheduler: schedule.Scheduler,
        shadow: bool = False,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self._reload_settings = reload_settings
        self.metrics = metrics
        self.scheduler = scheduler
        self.shadow = shadow
        self.clock = clock
        self.stop_event = threading.Event()
        self.reload_requested = threading.Event()
        self.jobs = Jobs(metrics)
        self._one_run = threading.Lock()
        self._engine: Engine | None = None
        self._table: TaskTable | None = None
        self._totals: Totals | None = None
        self._recount_totals = False  # set by a cleanup that changed rows; read and cleared by the next poll
        self.retry: CleanupRetry | None = None  # set by a cleanup that failed; the loop starts it when due
        self._last_tick = time.monotonic()
        self.poll_failures = 0
        metrics.set_table(settings.task_table.table)
        metrics.set_thresholds(standard_policies(settings))

    # --- the database --------------------------------------------------------------------------

    def task_table(self) -> TaskTable:
        """Return the reflected task table, connecting (again) when needed."""
        if self._table is None:
            settings = self.settings
            if self._engine is None:
                self._engine = _engine_for(settings)
            with database_errors(f"cannot read table {settings.task_table.table!r}", settings.secrets):
                self._table = open_table(self._engine, settings)
        return self._table

    def open_database(self) -> None:
        """At start: refuse what no wait mends (no such file, table or column, a bad URL, no driver, a
        refused login, privilege or database: ``ConfigError``), as a one-shot run does; a server that
        does not answer yet is only logged, and the polls keep trying. Say once which indexes are missing."""
        try:
            table = self.task_table()
            with database_errors(f"cannot read the indexes of {self.settings.table!r}", self.settings.secrets):
                missing = missing_indexes_line(check_indexes(table))
        except DatabaseError as exc:
            if exc.fatal:  # a refused login, privilege or database: no wait mends it
                raise ConfigError(f"{exc} (the daemon does not retry a refusal: fix the setting)") from None
            logger.warning(f"the database does not answer yet; polls will retry: {exc}")
            return
        if missing is not None:
            logger.warning(missing)

    def _table_for(self, new: Settings, changed: set[str]) -> tuple[Engine, TaskTable] | None:
        """Check that ``new`` fits its table, as at start (raise ``ReaperError`` if not); return a new
        engine and table when the settings that shape them changed and the database answered."""
        if not changed & DATABASE_KEYS:
            if self._table is not None:  # new task types or requeue must fit it
                check_fit(self._table, new)
            return None
        engine = _engine_for(new)
        try:
            with database_errors(f"cannot read table {new.task_table.table!r}", new.secrets):
                return engine, open_table(engine, new)
        except DatabaseError as exc:  # as at start: taken, and checked by the polls once the database answers
            engine.dispose()
            logger.warning(f"the database does not answer, so the new settings cannot be checked against it: {exc}")
            return None
        except ReaperError:
            engine.dispose()
            raise

    def _forget_database(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        self._engine, self._table, self._totals = None, None, None

    # --- jobs ----------------------------------------------------------------------------------

    def poll(self) -> bool:
        """Refresh the statistics snapshot behind the metrics; return whether the database answered."""
        started = time.monotonic()
        previous, self._recount_totals = (None if self._recount_totals else self._totals), False
        try:
            table = self.task_table()
            now = self.clock()
            max_age = timedelta(seconds=self.settings.daemon.totals_interval_seconds)
            with database_errors("statistics poll failed", self.settings.secrets):
                stats, self._totals = poll_stats(table, standard_policies(self.settings), now, previous, max_age)
        except ReaperError as exc:
            self._recount_totals = self._recount_totals or previous is None
            self.poll_failures += 1
            self.metrics.poll_failed(exc.category, time.monotonic() - started)
            logger.warning(f"database poll failed ({self.poll_failures} in a row): {exc}")
            return False
        if self.poll_failures:
            logger.info(f"database answers again after {self.poll_failures} failed polls")
        self.poll_failures = 0
        self.metrics.poll_succeeded(stats, now.timestamp(), time.monotonic() - started)
        return True

    def run_pass(self, dry_run: bool, rescue: bool = False) -> RunResult | None:
        """Run the policies once, or those that find zombies for a rescue (dry in shadow mode); record the outcome."""
        # One run at a time in this process: the cleanup waits for a rescue in progress, and a rescue gives way
        # to any other run. Left to the database lock, our own rescue would lock the nightly cleanup out.
        if not self._one_run.acquire(blocking=not rescue):
            logger.debug("rescue skipped: another run of this daemon is in progress")
            return None
        try:
            return self._recorded_run(dry_run or self.shadow, rescue)
        finally:
            self._one_run.release()

    def _recorded_run(self, dry_run: bool, rescue: bool) -> RunResult | None:
        what = run_mode(dry_run, rescue).replace("_", " ")
        try:
            run = self._run(dry_run, rescue)
        except LockHeld as exc:
            logger.info(f"{what} skipped: {exc}")
            self.metrics.run_failed(dry_run, "locked", self.clock().timestamp(), rescue)
            return None
        except ReaperError as exc:
            self.metrics.run_failed(dry_run, "failure", self.clock().timestamp(), rescue)
            self.metrics.database_errors.labels(exc.category).inc()
            raise
        if not dry_run and run.affected and not rescue:
            # The next poll counts what the cleanup left, not what it found. A rescue's failed rows wait for the
            # next scheduled count of the terminal statuses: a full scan every few minutes would weigh on the table.
            self._recount_totals = True
        self.metrics.run_finished(run, self.clock().timestamp(), rescue)
        level = "INFO" if run.matched or not rescue else "DEBUG"  # a rescue that finds nothing, every few minutes
        logger.log(
            level, f"scheduled {what} finished: {run.matched} matched, "
            f"{run.affected} changed, {run.skipped} skipped in {run.duration_seconds:.2f} s"
            + (f" ({run.throttled_seconds:.1f} s of it paused for load or lag)" if run.throttled_seconds else "")
            + (f"; stopped early: {run.stop_reason}" if run.stop_reason else "")
        )
        return run

    def _run(self, dry_run: bool, rescue: bool) -> RunResult:
        settings = self.settings
        options = run_options(settings, dry_run, stop_requested=self._stop_requested)
        table = self.task_table()
        now = self.clock()
        policies = [p for p in standard_policies(settings) if p.name in RESCUE_POLICIES or not rescue]
        with database_errors("policy run failed", settings.secrets):
            if dry_run:
                return run_policies(table, policies, now, options)
            with open_throttle(settings.throttle, table.engine, settings.secrets) as throttle:
                mode = "rescue" if rescue else "scheduled"
                return exclusive_cleanup(table, policies, now, replace(options, throttle=throttle), settings, mode)

    def rescue(self) -> RunResult | None:
        """Fail (or requeue) the zombies now, as the nightly cleanup would; a dry run in shadow mode."""
        return self.run_pass(dry_run=False, rescue=True)

    def cleanup(self, retry: CleanupRetry | None = None) -> RunResult | None:
        """Run the nightly cleanup (or retry ``retry``); when it fails, plan the next try."""
        self.retry = None  # this run stands for any try still waiting
        try:
            return self.run_pass(dry_run=False)
        except ReaperError:
            self.retry = next_retry(retry, self.clock(), self.settings.daemon.cleanup_retry_hours * 3600)
            raise

    def _stop_requested(self) -> str | None:
        return "stop requested" if self.stop_event.is_set() else None

    def reload(self) -> bool:
        """Load the settings again; keep the running ones when the new ones are invalid."""
        try:
            new = self._reload_settings()
        except ReaperError as exc:
            self.metrics.reloads.labels("failure").inc()
            logger.error(f"configuration reload failed, keeping the running configuration: {exc}")
            return False
        old = self.settings
        changed = new.differences(old)
        if new.batching.ceiling != old.batching.ceiling:  # batch_size given or left to its default: how far they grow
            changed.add("batch_size")
        try:
            opened = self._table_for(new, changed)
        except ReaperError as exc:
            self.metrics.reloads.labels("failure").inc()
            logger.error(f"configuration reload refused, keeping the running configuration: {exc}")
            return False
        self.settings = new
        if changed & DATABASE_KEYS:
            self._forget_database()
            if opened is not None:
                self._engine, self._table = opened
        if changed & SCHEDULE_KEYS:
            self.schedule_jobs()
        if changed & RESTART_KEYS:
            logger.warning(f"{', '.join(sorted(changed & RESTART_KEYS))} changed: takes effect after a restart")
        self.metrics.set_table(new.task_table.table)
        self.metrics.set_thresholds(standard_policies(new))
        self.metrics.reloads.labels("success").inc()
        logger.info(f"configuration reloaded: {', '.join(sorted(changed)) or 'nothing'} changed")
        return True

    # --- guards and scheduling -------------------------------------------------------------------

    def schedule_jobs(self) -> None:
        """(Re)create the scheduled jobs from the current settings."""
        settings = self.settings.daemon
        self.scheduler.clear()
        self.scheduler.every().day.at(settings.dry_run_at, settings.timezone).do(
            self.jobs.in_background("dry_run", lambda: self.run_pass(dry_run=True))
        )
        self.scheduler.every().day.at(settings.cleanup_at, settings.timezone).tag("cleanup").do(
            self.jobs.in_background("cleanup", self.cleanup)
        )
        # schedule builds a timedelta from the interval, so a float works; its annotation says int.
        every = self.scheduler.every(settings.reload_interval_minutes)  # type: ignore[arg-type]  # see above
        every.minutes.do(self.jobs.guarded("reload", self.reload))
        if settings.rescue_interval_seconds:
            rescue = self.scheduler.every(settings.rescue_interval_seconds)  # type: ignore[arg-type]  # see above
            rescue.seconds.do(self.jobs.in_background("rescue", self.rescue))

    def next_cleanup(self) -> datetime | None:
        """When the scheduled cleanup (a dry run in shadow mode) is due next, in UTC; ``None`` before scheduling."""
        jobs = self.scheduler.get_jobs("cleanup")
        # schedule keeps next_run as a naive time of the machine's zone; astimezone() reads it as such.
        return jobs[0].next_run.astimezone(UTC) if jobs and jobs[0].next_run else None

    def wait_for_jobs(self, timeout: float) -> None:
        """Wait for the jobs running in background threads (tests, and shutdown)."""
        self.jobs.wait(timeout)

    # --- the loop --------------------------------------------------------------------------------

    def tick(self) -> None:
        """Run whatever is due, and a reload that SIGHUP asked for."""
        self._last_tick = time.monotonic()
        if self.reload_requested.is_set():
            self.reload_requested.clear()
            self.jobs.guarded("reload", self.reload)()
        retry = self.retry
        if retry is not None and self.clock() >= retry.due:
            self.retry = None
            self.jobs.in_background("cleanup", lambda: self.cleanup(retry))()
        self.jobs.guarded("scheduler", self.scheduler.run_pending)()

    def healthy(self) -> tuple[bool, str]:
        """Whether the loop has ticked lately (for /healthz)."""
        silent = time.monotonic() - self._last_tick
        return silent < 10 * TICK_SECONDS + 5, f"loop last ticked {silent:.1f} s ago"

    def ready(self) -> tuple[bool, str]:
        """Whether the last database poll worked (for /readyz)."""
        up = self.metrics.snapshot.database_up
        return up, "database answered the last poll" if up else "database did not answer the last poll"

    def _poll_forever(self) -> None:
        poll = self.jobs.guarded("stats", self.poll)
        while True:
            interval = self.settings.daemon.stats_interval_seconds  # read at each turn: a reload may change it
            if self.stop_event.wait(backoff_seconds(self.poll_failures, interval)):
                return
            poll()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the daemon; SIGHUP reloads the configuration."""
        signal.signal(signal.SIGTERM, lambda *_: self.stop_event.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop_event.set())
        signal.signal(signal.SIGHUP, lambda *_: self.reload_requested.set())

    def run(self, on_ready: Callable[[], None] = lambda: None) -> int:
        """Poll once, call ``on_ready`` (which starts the HTTP server), then loop until stopped."""
        self.schedule_jobs()
        self.jobs.guarded("stats", self.poll)()
        on_ready()
        poller = threading.Thread(target=self._poll_forever, name="reaper-stats", daemon=True)
        poller.start()
        while not self.stop_event.is_set():
            self.tick()
            self.stop_event.wait(TICK_SECONDS)
        logger.info("stopping: waiting for running jobs to finish their batch")
        self.wait_for_jobs(SHUTDOWN_GRACE_SECONDS)
        poller.join(timeout=SHUTDOWN_GRACE_SECONDS)
        self._forget_database()
        return 0
