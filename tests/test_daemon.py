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
from test_metrics import samples, value

from helpers import NOW, SERVER_BACKENDS, Shape, Tasks, ago, settings_for
from reaper.archive import JsonlArchive
from reaper.daemon import Daemon, backoff_seconds
from reaper.errors import ArchiveError, ConfigError, DatabaseError
from reaper.http import MetricsServer, TlsFiles, build_app
from reaper.metrics import ReaperMetrics
from reaper.settings import Settings, load_settings
from reaper.table import open_table
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
    daemon.run_policies(dry_run=False)
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
        daemon.scheduler.every(1).seconds.do(daemon.guarded("broken", broken))
        for _ in range(3):
            frozen.tick(2)
            daemon.tick()
    assert len(calls) == 3
    assert value(samples(registry), "reaper_job_failures_total", job="broken", kind="RuntimeError") == 3


def test_a_job_still_running_is_skipped_not_started_twice(tasks: Tasks, database_url: str) -> None:
    daemon, registry = make_daemon(settings_for(database_url))
    inner: list[str] = []

    def reentrant() -> None:
        inner.append("outer")
        daemon.guarded("slow", lambda: inner.append("inner"))()

    daemon.guarded("slow", reentrant)()
    assert inner == ["outer"]
    assert value(samples(registry), "reaper_jobs_skipped_total", job="slow") == 1


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
    run = daemon.run_policies(dry_run=False)
    assert run is not None and run.stop_reason == "stop requested" and tasks.count() == 3
    assert value(samples(registry), "reaper_runs_total", mode="cleanup", outcome="stopped") == 1
    assert value(samples(registry), "reaper_last_success_timestamp_seconds") == 0


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
    daemon.run_policies(dry_run=True)
    assert daemon.poll()
    assert value(samples(registry), "reaper_tasks", status="success", task_type="download") == 4
    tasks.add("failure")  # not counted yet: a dry run changes nothing, so the last full count stands
    assert daemon.poll()
    assert value(samples(registry), "reaper_tasks", status="failure", task_type="download") == 0
    daemon.run_policies(dry_run=False)
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
    assert daemon.settings.running_timeout_hours == 6
    assert value(samples(registry), "reaper_config_reloads_total", outcome="failure") == 1


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
    assert daemon.settings.running_timeout_action == "fail"
    assert value(samples(registry), "reaper_config_reloads_total", outcome="failure") == 1
    daemon.run_policies(dry_run=False)
    assert tasks.status_of(zombie) == "failure"


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
    assert status == 200 and 'reaper_stale_tasks{status="running",task_type="download"} 1.0' in body
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
    assert not daemon.poll() and not daemon.poll()
    scraped = samples(registry)
    assert value(scraped, "reaper_database_up") == 0
    assert value(scraped, "reaper_database_errors_total", kind="operational") == 2
    assert daemon.ready()[0] is False and daemon.poll_failures == 2


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
            daemon.run_policies(dry_run=False)  # the guard around the job logs and counts this
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
        assert status == 200 and 'reaper_stale_tasks{status="pending",task_type=' in body
        assert "reaper_database_up 1.0" in body
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while 'reaper_config_reloads_total{outcome="success"} 1.0' not in get(base + "/metrics")[1]:
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
    assert daemon.settings.batch_ceiling == 100_000  # left at its default: batches may grow
    config.write_text("batch_size = 1000\n")  # the same value, now chosen on purpose
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="INFO")
    try:
        assert daemon.reload()
    finally:
        logger.remove(sink)
    assert daemon.settings.batch_ceiling == 1000
    assert any("configuration reloaded: batch_size changed" in line for line in lines), lines


@pytest.mark.parametrize("line", ["batch_size = true", "success_retention_days = true", "max_attempts = 2.0"])
def test_a_reload_with_a_boolean_or_fraction_for_a_number_is_refused_and_counted_as_failed(
    tasks: Tasks, database_url: str, tmp_path: Path, line: str
) -> None:
    config = tmp_path / "reaper.toml"
    daemon, registry = reloading_daemon(database_url, config, "success_retention_days = 30\nbatch_size = 500\n")
    config.write_text(f"{line}\n")
    assert not daemon.reload()
    assert (daemon.settings.success_retention_days, daemon.settings.batch_size) == (30, 500)
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
        daemon.run_policies(dry_run=False)  # the guard around the job logs and counts this
    assert tasks.status_of(zombie) == "failure" and tasks.get(old) is not None
    (line,) = [json.loads(text) for text in Path("reaper-audit.jsonl").read_text().splitlines()]
    assert (line["mode"], line["affected"], line["outcome"]) == ("scheduled", 1, "failed")
    assert value(samples(registry), "reaper_runs_total", mode="cleanup", outcome="failure") == 1
