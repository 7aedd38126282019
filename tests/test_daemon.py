"""The daemon: its schedule, guarded jobs, reloads, HTTP endpoints, faults and signals."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schedule
from freezegun import freeze_time
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, event
from test_metrics import samples, value

from helpers import NOW, SERVER_BACKENDS, Shape, Tasks, ago, create_table, is_write, settings_for, wait_until
from reaper.daemon.http import HttpLimits, MetricsServer, TlsFiles, build_app
from reaper.daemon.loop import Daemon, backoff_seconds
from reaper.daemon.metrics import ReaperMetrics
from reaper.database.lock import exclusive_run
from reaper.database.table import open_table
from reaper.errors import ArchiveError, ConfigError, DatabaseError
from reaper.safety.archive import JsonlArchive
from reaper.settings.model import Settings, load_settings
from servers import Server


def make_daemon(settings: Settings, reload: Any = None, **kwargs: Any) -> tuple[Daemon, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = ReaperMetrics(registry, "test")
    daemon = Daemon(settings, reload or (lambda: settings), metrics, schedule.Scheduler(), **kwargs)
    return daemon, registry


def reloading_daemon(database_url: str, config: Path, text: str, **kwargs: Any) -> tuple[Daemon, CollectorRegistry]:
    """A daemon whose settings come from the file ``config`` (written with ``text``), and reload from it."""
    config.write_text(text)

    def load() -> Settings:
        return load_settings({"database_url": database_url}, config)

    return make_daemon(load(), reload=load, **kwargs)


# --- the schedule, driven by freezegun ----------------------------------------------------------------


def test_dry_run_at_one_cleanup_at_two_and_reload_on_the_hour(tasks: Tasks, database_url: str) -> None:
    old = tasks.add("success", finished_at=ago(days=60))
    with freeze_time("2026-11-29 00:00:00") as frozen:
        daemon, registry = make_daemon(settings_for(database_url))
        daemon.schedule_jobs()
        frozen.move_to("2026-11-29 00:59:59")
        daemon.tick()
        daemon.wait_for_jobs(30)
        assert value(samples(registry), "reaper_runs_total", mode="dry_run", outcome="success") == 0
        frozen.move_to("2026-11-29 01:00:01")
        daemon.tick()
        daemon.wait_for_jobs(30)
        scraped = samples(registry)
        assert value(scraped, "reaper_runs_total", mode="dry_run", outcome="success") == 1
        assert value(scraped, "reaper_config_reloads_total", outcome="success") == 1  # an hour after start
        assert tasks.status_of(old) == "success"  # the dry run wrote nothing
        frozen.move_to("2026-11-29 02:00:01")
        daemon.tick()
        daemon.wait_for_jobs(30)
        scraped = samples(registry)
        assert value(scraped, "reaper_runs_total", mode="cleanup", outcome="success") == 1
        assert value(scraped, "reaper_config_reloads_total", outcome="success") == 2  # and again on the hour
        assert tasks.get(old) is None
        frozen.move_to("2026-11-30 01:00:01")
        daemon.tick()
        daemon.wait_for_jobs(30)
        assert value(samples(registry), "reaper_runs_total", mode="dry_run", outcome="success") == 2


def test_schedule_times_follow_the_configured_time_zone(tasks: Tasks, database_url: str) -> None:
    # 02:00 in Shanghai (UTC+8) is 18:00 UTC the day before.
    with freeze_time("2026-11-28 17:00:00") as frozen:
        daemon, registry = make_daemon(settings_for(database_url, timezone="Asia/Shanghai"))
        daemon.schedule_jobs()
        frozen.move_to("2026-11-28 17:59:59")
        daemon.tick()
        daemon.wait_for_jobs(30)
        assert value(samples(registry), "reaper_runs_total", mode="cleanup", outcome="success") == 0
        frozen.move_to("2026-11-28 18:00:01")
        daemon.tick()
        daemon.wait_for_jobs(30)
        assert value(samples(registry), "reaper_runs_total", mode="cleanup", outcome="success") == 1


def test_shadow_mode_runs_the_cleanup_as_a_dry_run(tasks: Tasks, database_url: str) -> None:
    old = tasks.add("success", finished_at=ago(days=60))
    daemon, registry = make_daemon(settings_for(database_url), shadow=True, clock=lambda: NOW)
    daemon.run_pass(dry_run=False)
    scraped = samples(registry)
    assert tasks.status_of(old) == "success"
    assert value(scraped, "reaper_runs_total", mode="dry_run", outcome="success") == 1
    assert value(scraped, "reaper_runs_total", mode="cleanup", outcome="success") == 0


# --- guarded jobs --------------------------------------------------------------------------------------


def test_a_failing_job_is_counted_and_the_loop_goes_on(tasks: Tasks, database_url: str) -> None:
    daemon, registry = make_daemon(settings_for(database_url))
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("boom")

    with freeze_time("2026-11-29 00:00:00") as frozen:
        daemon.scheduler.clear()
        daemon.scheduler.every(1).seconds.do(daemon.jobs.guarded("broken", broken))
        for _ in range(3):
            frozen.tick(2)
            daemon.tick()
    assert len(calls) == 3
    assert value(samples(registry), "reaper_job_failures_total", scheduled_job="broken", kind="RuntimeError") == 3


def test_a_stop_request_ends_the_cleanup_after_the_batch_in_hand(tasks: Tasks, database_url: str) -> None:
    for _ in range(5):
        tasks.add("success", finished_at=ago(days=60))
    daemon, registry = make_daemon(settings_for(database_url, batch_size=2), clock=lambda: NOW)
    original = daemon.stop_event.is_set
    checks: list[bool] = []

    def stop_once_a_batch_is_done() -> bool:
        checks.append(True)
        return tasks.count() < 5 or original()

    daemon.stop_event.is_set = stop_once_a_batch_is_done  # type: ignore[method-assign]  # a stop after one batch
    run = daemon.run_pass(dry_run=False)
    assert run is not None and run.stop_reason == "stop requested" and tasks.count() == 3
    assert value(samples(registry), "reaper_runs_total", mode="cleanup", outcome="stopped") == 1
    assert value(samples(registry), "reaper_last_success_timestamp_seconds") == 0


# --- rescues between cleanups, and retries of a failed cleanup -----------------------------------------------


def zombies_and_old_rows(tasks: Tasks) -> dict[str, Any]:
    return {
        "running": tasks.add("running", started_at=ago(hours=30)),
        "pending": tasks.add("pending", created_at=ago(hours=3)),
        "success": tasks.add("success", finished_at=ago(days=60)),
        "failure": tasks.add("failure", finished_at=ago(days=30)),
    }


def test_a_rescue_fails_the_zombies_and_leaves_old_rows_to_the_nightly_cleanup(
    tasks: Tasks, database_url: str
) -> None:
    rows = zombies_and_old_rows(tasks)
    daemon, registry = make_daemon(settings_for(database_url), clock=lambda: NOW)
    run = daemon.rescue()
    assert run is not None and set(run.policies) == {"running_timeout", "pending_timeout"}
    assert [tasks.status_of(rows[name]) for name in ("running", "pending", "success", "failure")] == [
        "failure", "failure", "success", "failure"
    ]
    scraped = samples(registry)
    assert value(scraped, "reaper_runs_total", mode="rescue", outcome="success") == 1
    assert value(scraped, "reaper_runs_total", mode="cleanup", outcome="success") == 0
    assert value(scraped, "reaper_reaped_tasks_total", policy="running_timeout", action="failed") == 1
    assert value(scraped, "reaper_last_success_timestamp_seconds") == 0  # a rescue is not the nightly cleanup


def test_rescues_run_every_rescue_interval(tasks: Tasks, database_url: str) -> None:
    zombie = tasks.add("running", started_at=ago(hours=30))
    with freeze_time("2026-11-29 12:00:00") as frozen:
        daemon, registry = make_daemon(settings_for(database_url, rescue_interval_seconds=60), clock=lambda: NOW)
        daemon.schedule_jobs()
        frozen.move_to("2026-11-29 12:00:59")
        daemon.tick()
        daemon.wait_for_jobs(30)
        assert tasks.status_of(zombie) == "running"
        frozen.move_to("2026-11-29 12:01:01")
        daemon.tick()
        daemon.wait_for_jobs(30)
        assert tasks.status_of(zombie) == "failure"
        frozen.move_to("2026-11-29 12:02:02")
        daemon.tick()
        daemon.wait_for_jobs(30)
        assert value(samples(registry), "reaper_runs_total", mode="rescue", outcome="success") == 2


def test_a_rescue_interval_of_zero_leaves_the_zombies_to_the_nightly_cleanup(tasks: Tasks, database_url: str) -> None:
    zombie = tasks.add("running", started_at=ago(hours=30))
    with freeze_time("2026-11-29 12:00:00") as frozen:
        daemon, registry = make_daemon(settings_for(database_url, rescue_interval_seconds=0), clock=lambda: NOW)
        daemon.schedule_jobs()
        for minutes in range(1, 13):  # an hour, in steps of five minutes
            frozen.move_to(f"2026-11-29 {12 + minutes * 5 // 60:02d}:{minutes * 5 % 60:02d}:01")
            daemon.tick()
            daemon.wait_for_jobs(30)
    assert tasks.status_of(zombie) == "running"
    assert value(samples(registry), "reaper_runs_total", mode="rescue", outcome="success") == 0


def test_in_shadow_mode_a_rescue_is_a_dry_run_that_keeps_the_other_candidates(tasks: Tasks, database_url: str) -> None:
    rows = zombies_and_old_rows(tasks)
    daemon, registry = make_daemon(settings_for(database_url), shadow=True, clock=lambda: NOW)
    daemon.run_pass(dry_run=True)
    tasks.add("running", started_at=ago(hours=40))
    daemon.rescue()
    assert tasks.status_of(rows["running"]) == "running" and tasks.status_of(rows["pending"]) == "pending"
    scraped = samples(registry)
    assert value(scraped, "reaper_runs_total", mode="rescue_dry_run", outcome="success") == 1
    assert value(scraped, "reaper_runs_total", mode="rescue", outcome="success") == 0
    assert value(scraped, "reaper_dry_run_candidates", policy="running_timeout") == 2  # the rescue's own count
    assert value(scraped, "reaper_dry_run_candidates", policy="success_retention") == 1  # the nightly dry run's


def test_the_audit_trail_tells_a_rescue_from_a_cleanup(tasks: Tasks, database_url: str, tmp_path: Path) -> None:
    zombies_and_old_rows(tasks)
    audit = tmp_path / "audit.jsonl"
    daemon, _ = make_daemon(settings_for(database_url, audit_log=str(audit)), clock=lambda: NOW)
    daemon.rescue()
    tasks.add("running", started_at=ago(hours=30))
    daemon.cleanup()
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [line["mode"] for line in lines] == ["rescue", "scheduled"]
    assert set(lines[0]["policies"]) == {"running_timeout", "pending_timeout"}
    assert lines[1]["policies"]["success_retention"]["affected"] == 1


def test_a_rescue_finds_the_lock_another_reaper_holds_and_changes_nothing(tasks: Tasks, database_url: str) -> None:
    zombie = tasks.add("running", started_at=ago(hours=30))
    daemon, registry = make_daemon(settings_for(database_url), clock=lambda: NOW)
    holder = create_engine(database_url)
    try:
        with exclusive_run(holder, "processing_tasks"):
            assert daemon.rescue() is None
    finally:
        holder.dispose()
    assert tasks.status_of(zombie) == "running"
    assert value(samples(registry), "reaper_runs_total", mode="rescue", outcome="locked") == 1


def test_the_nightly_cleanup_waits_for_a_rescue_in_progress_instead_of_being_locked_out(
    tasks: Tasks, database_url: str
) -> None:
    zombie = tasks.add("running", started_at=ago(hours=30))
    old = tasks.add("success", finished_at=ago(days=60))
    daemon, registry = make_daemon(settings_for(database_url), clock=lambda: NOW)
    writing, go_on = threading.Event(), threading.Event()

    def hold_the_rescues_write(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if is_write(statement, ("UPDATE",)) and not writing.is_set():  # on PostgreSQL, inside a WITH clause
            writing.set()  # the rescue holds the table's lock and is about to write
            wait_until(go_on.is_set, 30)

    # Waits poll with sleeps: a timed wait on a condition never returns under faketime (see .ci/run).
    event.listen(daemon.task_table().engine, "before_cursor_execute", hold_the_rescues_write)
    rescue = threading.Thread(target=daemon.rescue)
    rescue.start()
    assert wait_until(writing.is_set, 30)
    cleanup = threading.Thread(target=daemon.run_pass, args=(False,))
    cleanup.start()
    time.sleep(0.5)
    assert cleanup.is_alive()  # waiting for the rescue, rather than finding the lock taken and giving up
    go_on.set()
    assert wait_until(lambda: not rescue.is_alive() and not cleanup.is_alive(), 30)
    scraped = samples(registry)
    assert value(scraped, "reaper_runs_total", mode="rescue", outcome="success") == 1
    assert value(scraped, "reaper_runs_total", mode="cleanup", outcome="success") == 1
    assert value(scraped, "reaper_runs_total", mode="cleanup", outcome="locked") == 0
    assert tasks.get(old) is None and tasks.status_of(zombie) == "failure"


def test_a_failed_cleanup_is_tried_again_until_it_succeeds(tmp_path: Path) -> None:
    folder = tmp_path / "not-yet"  # SQLite cannot open a database in a folder that does not exist
    url = f"sqlite:///{folder / 'tasks.sqlite3'}"
    clock = Clock()
    daemon, registry = make_daemon(settings_for(url), clock=clock)
    daemon.jobs.guarded("cleanup", daemon.cleanup)()
    assert daemon.retry is not None and (daemon.retry.attempt, daemon.retry.due) == (1, NOW + timedelta(minutes=1))
    clock.advance(59)
    daemon.tick()
    daemon.wait_for_jobs(30)
    assert value(samples(registry), "reaper_runs_total", mode="cleanup", outcome="failure") == 1
    clock.advance(1)
    daemon.tick()
    daemon.wait_for_jobs(30)
    assert value(samples(registry), "reaper_runs_total", mode="cleanup", outcome="failure") == 2
    assert (daemon.retry.attempt, daemon.retry.due) == (2, NOW + timedelta(minutes=3))
    folder.mkdir()
    engine = create_engine(url)
    later = Tasks(engine, create_table(engine), Shape())
    old = later.add("success", finished_at=ago(days=60))
    clock.advance(120)
    daemon.tick()
    daemon.wait_for_jobs(30)
    scraped = samples(registry)
    assert value(scraped, "reaper_runs_total", mode="cleanup", outcome="success") == 1
    assert daemon.retry is None and later.get(old) is None
    engine.dispose()


def test_a_cleanup_that_keeps_failing_is_not_retried_past_the_retry_window(tmp_path: Path) -> None:
    clock = Clock()
    url = f"sqlite:///{tmp_path / 'not-yet' / 'tasks.sqlite3'}"
    daemon, registry = make_daemon(settings_for(url, cleanup_retry_hours=0.05), clock=clock)  # three minutes
    daemon.jobs.guarded("cleanup", daemon.cleanup)()
    while daemon.retry is not None:
        clock.now = daemon.retry.due
        daemon.tick()
        daemon.wait_for_jobs(30)
    assert clock.now == NOW + timedelta(minutes=3)  # tries at 1, 3 (1 + 2): the window ends there
    assert value(samples(registry), "reaper_runs_total", mode="cleanup", outcome="failure") == 3


# --- the statistics poll -------------------------------------------------------------------------------------


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_the_daemon_recounts_the_terminal_statuses_only_every_totals_interval(tasks: Tasks, database_url: str) -> None:
    tasks.add("success", finished_at=ago(days=1))
    clock = Clock()
    daemon, registry = make_daemon(settings_for(database_url, totals_interval_seconds=120), clock=clock)
    assert value(samples(registry), "reaper_last_totals_timestamp_seconds") == 0
    assert daemon.poll()
    tasks.add("success")
    tasks.add("running", started_at=ago(hours=30))
    for _ in range(3):  # 30, 60, 90 s later: the finished rows of the first poll, the running ones of now
        clock.advance(30)
        assert daemon.poll()
        scraped = samples(registry)
        assert value(scraped, "reaper_tasks", status="success", task_type="download") == 1
        assert value(scraped, "reaper_tasks", status="running", task_type="download") == 1
        assert value(scraped, "reaper_stale_tasks", status="running", task_type="download") == 1
        assert value(scraped, "reaper_last_totals_timestamp_seconds") == NOW.timestamp()
    clock.advance(30)
    assert daemon.poll()
    scraped = samples(registry)
    assert value(scraped, "reaper_tasks", status="success", task_type="download") == 2
    assert value(scraped, "reaper_last_totals_timestamp_seconds") == (NOW + timedelta(seconds=120)).timestamp()


def test_a_cleanup_that_changed_rows_makes_the_next_poll_recount_everything(tasks: Tasks, database_url: str) -> None:
    for _ in range(3):
        tasks.add("success", finished_at=ago(days=60))
    tasks.add("success", finished_at=ago(days=1))
    daemon, registry = make_daemon(settings_for(database_url), clock=lambda: NOW)
    assert daemon.poll()
    assert value(samples(registry), "reaper_tasks", status="success", task_type="download") == 4
    daemon.run_pass(dry_run=True)
    assert daemon.poll()
    assert value(samples(registry), "reaper_tasks", status="success", task_type="download") == 4
    tasks.add("failure")  # not counted yet: a dry run changes nothing, so the last full count stands
    assert daemon.poll()
    assert value(samples(registry), "reaper_tasks", status="failure", task_type="download") == 0
    daemon.run_pass(dry_run=False)
    assert daemon.poll()
    scraped = samples(registry)
    assert value(scraped, "reaper_tasks", status="success", task_type="download") == 1
    assert value(scraped, "reaper_tasks", status="failure", task_type="download") == 1


# --- reloading -------------------------------------------------------------------------------------------


def test_a_changed_config_file_takes_effect_without_a_restart(tasks: Tasks, database_url: str, tmp_path: Path) -> None:
    tasks.add("running", started_at=ago(hours=13))
    config = tmp_path / "reaper.toml"
    daemon, registry = reloading_daemon(database_url, config, "running_timeout_hours = 24\n", clock=lambda: NOW)
    daemon.poll()
    assert value(samples(registry), "reaper_stale_tasks", status="running", task_type="download") == 0
    config.write_text("running_timeout_hours = 12\n")
    assert daemon.reload()
    daemon.poll()
    scraped = samples(registry)
    assert value(scraped, "reaper_threshold_seconds", policy="running_timeout") == 12 * 3600
    assert value(scraped, "reaper_stale_tasks", status="running", task_type="download") == 1


def test_an_invalid_new_config_is_logged_and_the_running_one_kept(
    tasks: Tasks, database_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "reaper.toml"
    daemon, registry = reloading_daemon(database_url, config, "running_timeout_hours = 6\n")
    config.write_text("running_timeout_hours = -1\n")
    assert not daemon.reload()
    assert daemon.settings.policies.running_timeout_hours == 6
    assert value(samples(registry), "reaper_config_reloads_total", outcome="failure") == 1


def test_a_config_file_that_is_not_utf8_on_sighup_is_a_failed_reload_not_a_failed_job(
    tasks: Tasks, database_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "reaper.toml"
    daemon, registry = reloading_daemon(database_url, config, "running_timeout_hours = 6\n")
    config.write_bytes(b"running_timeout_hours = 12 # \xff\n")
    daemon.reload_requested.set()  # what SIGHUP does
    daemon.tick()
    scraped = samples(registry)
    assert value(scraped, "reaper_config_reloads_total", outcome="failure") == 1
    assert not [name for name, _ in scraped if name == "reaper_job_failures_total"]
    assert daemon.settings.policies.running_timeout_hours == 6


def test_a_reload_that_asks_for_a_column_the_table_lacks_is_refused(
    make_tasks: Any, database_url: str, tmp_path: Path
) -> None:
    tasks = make_tasks(Shape(columns={**Shape().columns, "updated_at": None}))
    zombie = tasks.add("running", started_at=ago(hours=30))
    config = tmp_path / "reaper.toml"
    daemon, registry = reloading_daemon(
        database_url, config, "running_timeout_hours = 24\n[columns]\nupdated_at = ''\n", clock=lambda: NOW
    )
    assert daemon.poll()
    config.write_text("running_timeout_action = 'requeue'\n[columns]\nupdated_at = ''\n")
    assert not daemon.reload()  # requeue needs an updated-at column
    assert daemon.settings.policies.running_timeout_action == "fail"
    assert value(samples(registry), "reaper_config_reloads_total", outcome="failure") == 1
    daemon.run_pass(dry_run=False)
    assert tasks.status_of(zombie) == "failure"


@pytest.mark.parametrize(
    "setting", ["table = 'no_such_table'", "[columns]\nerror = 'no_such_column'", "[task_types.x]\nmax_attempts = 2"]
)
def test_a_reload_naming_a_table_or_column_that_does_not_exist_is_refused_as_at_start(
    tasks: Tasks, database_url: str, tmp_path: Path, setting: str
) -> None:
    zombie = tasks.add("running", started_at=ago(hours=30))
    config = tmp_path / "reaper.toml"
    daemon, registry = reloading_daemon(database_url, config, "running_timeout_hours = 24\n", clock=lambda: NOW)
    assert daemon.poll()
    config.write_text(f"running_timeout_hours = 12\n{setting}\n")
    with pytest.raises(ConfigError):  # what a start with that file says
        open_table(tasks.engine, load_settings({"database_url": database_url}, config))
    assert not daemon.reload()
    assert daemon.settings.policies.running_timeout_hours == 24
    assert daemon.settings.task_table.table == "processing_tasks"
    assert value(samples(registry), "reaper_config_reloads_total", outcome="failure") == 1
    assert daemon.poll()
    daemon.run_pass(dry_run=False)
    assert tasks.status_of(zombie) == "failure"


def test_the_daemon_refuses_at_start_a_table_that_does_not_exist(tmp_path: Path) -> None:
    (tmp_path / "tasks.sqlite3").touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REAPER_")}
    env.update(REAPER_METRICS_PORT="0", REAPER_DATABASE_URL="sqlite:///tasks.sqlite3", REAPER_TABLE="no_such_table")
    done = subprocess.run([sys.executable, "-m", "reaper"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("reaper: error:")]
    assert len(errors) == 1 and "table 'no_such_table' not found" in errors[0]
    assert "Traceback" not in done.stderr


def test_a_reload_that_turns_requeue_on_dates_pending_rows_from_their_last_write(
    tasks: Tasks, database_url: str, tmp_path: Path
) -> None:
    tasks.add("pending", created_at=ago(hours=5), updated_at=ago(minutes=5))
    config = tmp_path / "reaper.toml"
    daemon, registry = reloading_daemon(database_url, config, "pending_timeout_action = 'fail'\n", clock=lambda: NOW)
    daemon.poll()
    assert value(samples(registry), "reaper_stale_tasks", status="pending", task_type="download") == 1
    config.write_text("pending_timeout_action = 'requeue'\n")
    assert daemon.reload()
    daemon.poll()
    assert value(samples(registry), "reaper_stale_tasks", status="pending", task_type="download") == 0


# --- HTTP ---------------------------------------------------------------------------------------------------


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture
def served(tasks: Tasks, database_url: str) -> Iterator[tuple[Daemon, str]]:
    daemon, registry = make_daemon(settings_for(database_url), clock=lambda: NOW)
    server = MetricsServer(build_app(registry, daemon.healthy, daemon.ready), "127.0.0.1", 0)
    server.start()
    yield daemon, f"http://127.0.0.1:{server.port}"
    server.stop()


def test_the_http_endpoints_serve_metrics_health_and_readiness(served: tuple[Daemon, str], tasks: Tasks) -> None:
    daemon, base = served
    tasks.add("running", started_at=ago(hours=30))
    assert get(base + "/readyz")[0] == 503  # no poll yet
    daemon.poll()
    status, body = get(base + "/metrics")
    assert status == 200
    assert 'reaper_stale_tasks{status="running",table="processing_tasks",task_type="download"} 1.0' in body
    assert get(base + "/healthz")[0] == 200
    assert get(base + "/readyz")[0] == 200
    assert get(base + "/nope")[0] == 404


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_database_down_at_start_is_reported_not_fatal() -> None:
    url = f"mysql+pymysql://reaper:pw@127.0.0.1:{closed_port()}/tasks"
    daemon, registry = make_daemon(load_settings({"database_url": url}))
    daemon.open_database()  # logged: the polls keep trying
    assert not daemon.poll() and not daemon.poll()
    scraped = samples(registry)
    assert value(scraped, "reaper_database_up") == 0
    assert value(scraped, "reaper_database_errors_total", kind="operational") == 2
    assert daemon.ready()[0] is False and daemon.poll_failures == 2


@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)
@pytest.mark.parametrize("refused", ["password", "database"])
def test_the_daemon_refuses_at_start_a_login_or_database_the_server_refuses_instead_of_retrying(
    tasks: Tasks, database_url: str, server: Server, refused: str
) -> None:
    url = database_url.replace(server.password, "not-the-password")
    if refused == "database":
        url = database_url.rsplit("/", 1)[0] + "/no_such_database"
    daemon, _ = make_daemon(settings_for(url))
    with pytest.raises(ConfigError) as caught:
        daemon.open_database()
    assert "does not retry" in str(caught.value) and server.password not in str(caught.value)


def test_the_daemon_says_once_at_start_how_many_recommended_indexes_are_missing(
    tasks: Tasks, database_url: str
) -> None:
    from loguru import logger

    daemon, _ = make_daemon(settings_for(database_url))
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(message.record["message"]), level="INFO")
    try:
        daemon.open_database()
    finally:
        logger.remove(sink)
    assert lines == ["4 recommended indexes missing: reaper --check-indexes"]


def test_polls_back_off_while_the_database_fails() -> None:
    assert [backoff_seconds(n, 30) for n in range(9)] == [30, 1, 2, 4, 8, 16, 32, 60, 60]


@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)
def test_a_database_that_goes_away_and_comes_back_is_recovered(
    tasks: Tasks, database_url: str, server: Server
) -> None:
    tasks.add("running", started_at=ago(hours=30))
    daemon, registry = make_daemon(settings_for(database_url), clock=lambda: NOW)
    assert daemon.poll()
    server.stop_process()
    try:
        assert not daemon.poll()
        scraped = samples(registry)
        assert value(scraped, "reaper_database_up") == 0
        assert value(scraped, "reaper_stale_tasks", status="running", task_type="download") == 1  # last numbers kept
        with pytest.raises(DatabaseError):
            daemon.run_pass(dry_run=False)  # the guard around the job logs and counts this
    finally:
        server.start()
    assert daemon.poll()
    assert value(samples(registry), "reaper_database_up") == 1
    assert value(samples(registry), "reaper_runs_total", mode="cleanup", outcome="failure") == 1


# --- the real process: signals ----------------------------------------------------------------------------


def start_daemon(tmp_path: Path, *argv: str) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REAPER_")}
    env.update(REAPER_METRICS_PORT="0", REAPER_STATS_INTERVAL_SECONDS="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "reaper", *argv], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 60
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        found = re.search(r"metrics on (http://[\d.]+:\d+)/metrics", line)
        if found:
            return process, found.group(1)
    process.kill()
    raise AssertionError("the daemon never said where it serves metrics")


@pytest.mark.slow
def test_the_demo_daemon_serves_live_metrics_reloads_on_sighup_and_stops_on_sigterm(tmp_path: Path) -> None:
    process, base = start_daemon(tmp_path, "--demo")
    try:
        status, body = get(base + "/metrics")  # the first scrape already has the numbers
        assert status == 200 and 'reaper_stale_tasks{status="pending",table="processing_tasks",task_type=' in body
        assert 'reaper_database_up{table="processing_tasks"} 1.0' in body
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        reloaded = 'reaper_config_reloads_total{outcome="success",table="processing_tasks"} 1.0'
        while reloaded not in get(base + "/metrics")[1]:
            assert time.monotonic() < deadline, "SIGHUP did not reload"
            time.sleep(0.2)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0 and time.monotonic() - started < 5
    finally:
        if process.poll() is None:
            process.kill()
    output = process.stdout.read() if process.stdout else ""
    assert "Traceback" not in output and "configuration reloaded" in output


@pytest.mark.slow
def test_the_daemon_refuses_a_port_in_use_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("REAPER_")}
        env["REAPER_METRICS_PORT"] = str(port)
        done = subprocess.run([sys.executable, "-m", "reaper", "--demo"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with Debian's openssl."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


@pytest.mark.slow
def test_metrics_are_served_over_tls_when_a_certificate_is_configured(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    registry = CollectorRegistry()
    ReaperMetrics(registry, "tls-test")
    server = MetricsServer(build_app(registry, lambda: (True, ""), lambda: (True, "")), "127.0.0.1", 0,
                           TlsFiles(cert, key))
    server.start()
    try:
        context = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(f"https://127.0.0.1:{server.port}/metrics", context=context, timeout=10) as reply:
            assert 'reaper_build_info{version="tls-test"} 1.0' in reply.read().decode()
        with pytest.raises(urllib.error.URLError):  # a client that does not trust the certificate is refused
            urllib.request.urlopen(f"https://127.0.0.1:{server.port}/metrics", timeout=10)
    finally:
        server.stop()


def request_threads() -> int:
    return sum(1 for thread in threading.enumerate() if "process_request" in thread.name)


def closed_by_server(client: socket.socket, within: float) -> bool:
    """Whether the server closes ``client`` within ``within`` seconds (whatever it answers first)."""
    client.settimeout(within)
    try:
        while client.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:  # reset: closed too
        pass
    return True


@pytest.mark.slow
def test_idle_and_half_sent_requests_are_bounded_in_number_and_time() -> None:
    registry = CollectorRegistry()
    ReaperMetrics(registry, "limits-test")
    limits = HttpLimits(read_timeout_seconds=0.5, max_connections=4)
    server = MetricsServer(build_app(registry, lambda: (True, ""), lambda: (True, "")), "127.0.0.1", 0, limits=limits)
    server.start()
    clients = []
    try:
        for number in range(30):  # each sends half a request, then waits as long as the server lets it
            client = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            client.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n" if number % 2 else b"")
            clients.append(client)
        time.sleep(0.2)
        assert request_threads() <= 4
        started = time.monotonic()
        assert all(closed_by_server(client, within=5) for client in clients)
        assert time.monotonic() - started < 3  # the read time-out, not the clients, ended them
        assert get(f"http://127.0.0.1:{server.port}/healthz")[0] == 200
    finally:
        for client in clients:
            client.close()
        server.stop()


@pytest.mark.slow
def test_a_tls_client_that_never_completes_its_handshake_does_not_hold_up_the_others(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    registry = CollectorRegistry()
    ReaperMetrics(registry, "tls-test")
    server = MetricsServer(build_app(registry, lambda: (True, ""), lambda: (True, "")), "127.0.0.1", 0,
                           TlsFiles(cert, key), HttpLimits(read_timeout_seconds=0.5))
    server.start()
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=5)  # connects, says nothing
    try:
        context = ssl.create_default_context(cafile=str(cert))
        started = time.monotonic()
        with urllib.request.urlopen(f"https://127.0.0.1:{server.port}/healthz", context=context, timeout=10) as reply:
            assert reply.status == 200
        assert time.monotonic() - started < 0.4  # served at once, not after the silent client's time-out
        assert closed_by_server(silent, within=5)
    finally:
        silent.close()
        server.stop()


def test_a_missing_certificate_is_a_one_line_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot load the metrics TLS certificate"):
        MetricsServer(build_app(CollectorRegistry(), lambda: (True, ""), lambda: (True, "")), "127.0.0.1", 0,
                      TlsFiles(tmp_path / "nope.pem", tmp_path / "nope.key"))


def test_a_reload_that_sets_the_batch_size_makes_it_the_most_a_batch_holds_and_says_so(
    tasks: Tasks, database_url: str, tmp_path: Path
) -> None:
    from loguru import logger

    config = tmp_path / "reaper.toml"
    daemon, _ = reloading_daemon(database_url, config, "", clock=lambda: NOW)
    assert daemon.settings.batching.ceiling == 100_000  # left at its default: batches may grow
    config.write_text("batch_size = 1000\n")  # the same value, now chosen on purpose
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="INFO")
    try:
        assert daemon.reload()
    finally:
        logger.remove(sink)
    assert daemon.settings.batching.ceiling == 1000
    assert any("configuration reloaded: batch_size changed" in line for line in lines), lines


@pytest.mark.parametrize("line", ["batch_size = true", "success_retention_days = true", "max_attempts = 2.0"])
def test_a_reload_with_a_boolean_or_fraction_for_a_number_is_refused_and_counted_as_failed(
    tasks: Tasks, database_url: str, tmp_path: Path, line: str
) -> None:
    config = tmp_path / "reaper.toml"
    daemon, registry = reloading_daemon(database_url, config, "success_retention_days = 30\nbatch_size = 500\n")
    config.write_text(f"{line}\n")
    assert not daemon.reload()
    assert (daemon.settings.policies.success_retention_days, daemon.settings.batching.batch_size) == (30, 500)
    assert value(samples(registry), "reaper_config_reloads_total", outcome="failure") == 1
    assert value(samples(registry), "reaper_config_reloads_total", outcome="success") == 0


def test_a_scheduled_cleanup_that_fails_half_way_leaves_its_audit_line(
    tasks: Tasks, database_url: str, tmp_path: Path
) -> None:
    zombie = tasks.add("running", started_at=ago(hours=30))
    old = tasks.add("success", finished_at=ago(days=40))
    settings = settings_for(database_url, archive="jsonl", archive_dir=tmp_path / "kept")
    table = open_table(tasks.engine, settings).table
    JsonlArchive(tmp_path / "kept", table, NOW, id_column="id").path.symlink_to("/dev/full")  # a full disk
    daemon, registry = make_daemon(settings, clock=lambda: NOW)
    with pytest.raises(ArchiveError, match="No space left on device"):
        daemon.run_pass(dry_run=False)  # the guard around the job logs and counts this
    assert tasks.status_of(zombie) == "failure" and tasks.get(old) is not None
    (line,) = [json.loads(text) for text in Path("reaper-audit.jsonl").read_text().splitlines()]
    assert (line["mode"], line["affected"], line["outcome"]) == ("scheduled", 1, "failed")
    assert value(samples(registry), "reaper_runs_total", mode="cleanup", outcome="failure") == 1
