"""Every metric, checked against a table built in the test; scrapes never query the database."""

from __future__ import annotations

from typing import Any

import schedule
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event, insert

from helpers import NOW, Shape, Tasks, ago, settings_for
from reaper.daemon.loop import Daemon
from reaper.daemon.metrics import ReaperMetrics
from reaper.daemon.page import PageContext, render_status_page
from reaper.daemon.snapshot import MAX_UNKNOWN_STATUSES
from reaper.inspect.stats import STATUS_ORDER
from reaper.settings.model import Settings


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Scrape ``registry`` as Prometheus would: sample name and sorted labels -> value."""
    text = generate_latest(registry).decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(scraped: dict[Any, float], name: str, **labels: str) -> float:
    """The sample of ``name`` with ``labels``, of the tests' table unless ``table`` is given: every series names it."""
    labels.setdefault("table", "processing_tasks")
    return scraped[(name, tuple(sorted(labels.items())))]


def make_daemon(settings: Settings, max_task_types: int = 50, **kwargs: Any) -> tuple[Daemon, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = ReaperMetrics(registry, "9.9.9", max_task_types)
    daemon = Daemon(settings, lambda: settings, metrics, schedule.Scheduler(), clock=lambda: NOW, **kwargs)
    return daemon, registry


def fill(tasks: Tasks) -> None:
    tasks.add("running", task_type="download", started_at=ago(hours=30))
    tasks.add("running", task_type="download", started_at=ago(hours=1))
    tasks.add("running", task_type="video_slice", started_at=ago(hours=50))
    tasks.add("pending", task_type="download", created_at=ago(hours=3))
    tasks.add("success", task_type="download", finished_at=ago(days=40))
    tasks.add("failure", task_type="generate_srt", finished_at=ago(days=8))


def test_task_and_zombie_gauges_match_the_table(tasks: Tasks, database_url: str) -> None:
    fill(tasks)
    daemon, registry = make_daemon(settings_for(database_url))
    assert daemon.poll()
    scraped = samples(registry)
    assert value(scraped, "reaper_tasks", status="running", task_type="download") == 2
    assert value(scraped, "reaper_tasks", status="running", task_type="video_slice") == 1
    assert value(scraped, "reaper_tasks", status="failure", task_type="generate_srt") == 1
    assert value(scraped, "reaper_tasks", status="revoked", task_type="download") == 0  # every status exported
    assert value(scraped, "reaper_stale_tasks", status="running", task_type="download") == 1
    assert value(scraped, "reaper_stale_tasks", status="running", task_type="video_slice") == 1
    assert value(scraped, "reaper_stale_tasks", status="pending", task_type="download") == 1
    assert value(scraped, "reaper_stale_tasks", status="pending", task_type="video_slice") == 0
    assert value(scraped, "reaper_oldest_task_age_seconds", status="running") == 50 * 3600
    assert value(scraped, "reaper_oldest_task_age_seconds", status="pending") == 3 * 3600


def test_health_gauges_thresholds_and_build_info(tasks: Tasks, database_url: str) -> None:
    daemon, registry = make_daemon(settings_for(database_url, running_timeout_hours=12))
    before = samples(registry)
    assert value(before, "reaper_database_up") == 0 and value(before, "reaper_last_success_timestamp_seconds") == 0
    daemon.poll()
    scraped = samples(registry)
    assert value(scraped, "reaper_database_up") == 1
    assert value(scraped, "reaper_last_poll_success_timestamp_seconds") == NOW.timestamp()
    assert value(scraped, "reaper_poll_duration_seconds") > 0
    assert value(scraped, "reaper_threshold_seconds", policy="running_timeout") == 12 * 3600
    assert value(scraped, "reaper_threshold_seconds", policy="success_retention") == 30 * 86400
    assert value(scraped, "reaper_build_info", version="9.9.9") == 1


def test_a_cleanup_counts_reaped_rows_and_sets_the_last_success(tasks: Tasks, database_url: str) -> None:
    fill(tasks)
    daemon, registry = make_daemon(settings_for(database_url))
    assert value(samples(registry), "reaper_reaped_tasks_total", policy="running_timeout", action="failed") == 0
    daemon.run_pass(dry_run=False)
    scraped = samples(registry)
    assert value(scraped, "reaper_reaped_tasks_total", policy="running_timeout", action="failed") == 2
    assert value(scraped, "reaper_reaped_tasks_total", policy="pending_timeout", action="failed") == 1
    assert value(scraped, "reaper_reaped_tasks_total", policy="success_retention", action="deleted") == 1
    assert value(scraped, "reaper_reaped_tasks_total", policy="failure_retention", action="deleted") == 1
    assert value(scraped, "reaper_runs_total", mode="cleanup", outcome="success") == 1
    assert value(scraped, "reaper_last_success_timestamp_seconds") == NOW.timestamp()
    assert value(scraped, "reaper_run_duration_seconds", mode="cleanup") > 0


def test_a_dry_run_exports_its_candidates_and_changes_nothing(tasks: Tasks, database_url: str) -> None:
    fill(tasks)
    before = tasks.dump()
    daemon, registry = make_daemon(settings_for(database_url))
    daemon.run_pass(dry_run=True)
    scraped = samples(registry)
    assert value(scraped, "reaper_dry_run_candidates", policy="running_timeout") == 2
    assert value(scraped, "reaper_dry_run_candidates", policy="failure_retention") == 1
    assert value(scraped, "reaper_runs_total", mode="dry_run", outcome="success") == 1
    assert value(scraped, "reaper_last_success_timestamp_seconds") == 0  # a dry run is not a cleanup
    assert value(scraped, "reaper_reaped_tasks_total", policy="running_timeout", action="failed") == 0
    assert tasks.dump() == before


def test_task_types_beyond_the_cap_are_folded_into_other(tasks: Tasks, database_url: str) -> None:
    for kind, count in (("download", 3), ("extract_audio", 2), ("video_slice", 1), ("capcut_export", 1)):
        for _ in range(count):
            tasks.add("running", task_type=kind, started_at=ago(hours=30))
    daemon, registry = make_daemon(settings_for(database_url), max_task_types=2)
    daemon.poll()
    scraped = samples(registry)
    kinds = {dict(labels)["task_type"] for name, labels in scraped if name == "reaper_tasks"}
    assert kinds == {"download", "extract_audio", "other"}
    assert value(scraped, "reaper_tasks", status="running", task_type="other") == 2
    assert value(scraped, "reaper_stale_tasks", status="running", task_type="other") == 2


def test_a_scrape_never_queries_the_database(tasks: Tasks, database_url: str) -> None:
    fill(tasks)
    daemon, registry = make_daemon(settings_for(database_url))
    daemon.poll()
    statements: list[str] = []

    def listener(*args: Any) -> None:
        statements.append(args[2])

    event.listen(daemon.task_table().engine, "before_cursor_execute", listener)
    for _ in range(3):
        generate_latest(registry)
    assert statements == []


def test_task_type_thresholds_and_requeues_are_exported(tasks: Tasks, database_url: str) -> None:
    fill(tasks)  # download running 30 h and 1 h, video_slice running 50 h
    settings = settings_for(
        database_url,
        task_types={"video_slice": {"running_timeout_hours": 60}, "download": {"running_timeout_action": "requeue"}},
    )
    daemon, registry = make_daemon(settings)
    daemon.poll()
    scraped = samples(registry)
    assert value(scraped, "reaper_stale_tasks", status="running", task_type="video_slice") == 0  # 50 h < 60 h
    assert value(scraped, "reaper_stale_tasks", status="running", task_type="download") == 1
    assert value(scraped, "reaper_threshold_seconds", policy="running_timeout") == 24 * 3600
    assert (
        value(scraped, "reaper_task_type_threshold_seconds", task_type="video_slice", threshold="running_timeout")
        == 60 * 3600
    )
    assert (
        value(scraped, "reaper_task_type_threshold_seconds", task_type="download", threshold="running_timeout")
        == 24 * 3600
    )
    daemon.run_pass(dry_run=False)
    scraped = samples(registry)
    assert value(scraped, "reaper_reaped_tasks_total", policy="running_timeout", action="requeued") == 1
    assert value(scraped, "reaper_reaped_tasks_total", policy="running_timeout", action="failed") == 0


def test_the_heartbeat_limit_is_exported_only_when_a_heartbeat_column_is_set(tasks: Tasks, database_url: str) -> None:
    daemon, registry = make_daemon(settings_for(database_url))
    daemon.poll()
    assert not any(name == "reaper_heartbeat_timeout_seconds" for name, _ in samples(registry))
    columns = {**Shape().column_settings(), "heartbeat_at": "updated_at"}
    daemon, registry = make_daemon(settings_for(database_url, columns=columns, heartbeat_timeout_minutes=5))
    daemon.poll()
    assert value(samples(registry), "reaper_heartbeat_timeout_seconds") == 300


def test_every_series_names_the_table_the_daemon_watches(make_tasks: Any, database_url: str) -> None:
    shape = Shape(name="video_jobs")
    fill(make_tasks(shape))
    daemon, registry = make_daemon(settings_for(database_url, shape))
    daemon.poll()
    daemon.run_pass(dry_run=False)
    reaper_series = [(name, dict(labels)) for name, labels in samples(registry) if name.startswith("reaper_")]
    assert {name for name, _ in reaper_series} >= {"reaper_tasks", "reaper_runs_total", "reaper_build_info"}
    assert all(labels.get("table") == "video_jobs" for _, labels in reaper_series), [
        name for name, labels in reaper_series if labels.get("table") != "video_jobs"
    ]


def test_scheduled_job_counters_name_their_job_in_a_label_prometheus_keeps(tasks: Tasks, database_url: str) -> None:
    daemon, registry = make_daemon(settings_for(database_url))
    daemon.jobs.guarded("cleanup", lambda: 1 / 0)()
    scraped = samples(registry)
    # A label named job would arrive as exported_job: Prometheus sets job to the scrape job's name.
    assert value(scraped, "reaper_job_failures_total", scheduled_job="cleanup", kind="ZeroDivisionError") == 1
    assert not any("job" in dict(labels) for _, labels in scraped)


def test_the_oldest_task_of_each_type_is_exported_beside_the_oldest_of_all(tasks: Tasks, database_url: str) -> None:
    fill(tasks)  # download running 30 h and 1 h, video_slice running 50 h, download pending 3 h
    daemon, registry = make_daemon(settings_for(database_url))
    daemon.poll()
    scraped = samples(registry)
    oldest = "reaper_task_type_oldest_age_seconds"
    assert value(scraped, oldest, status="running", task_type="download") == 30 * 3600
    assert value(scraped, oldest, status="running", task_type="video_slice") == 50 * 3600
    assert value(scraped, oldest, status="pending", task_type="download") == 3 * 3600
    assert [labels for name, labels in scraped if name == oldest and ("task_type", "video_slice") in labels
            and ("status", "pending") in labels] == []  # no pending video_slice task: no sample


def test_another_table_after_a_reload_starts_its_series_afresh(make_tasks: Any, database_url: str) -> None:
    fill(make_tasks())
    make_tasks(Shape(name="other_tasks"))
    registry = CollectorRegistry()
    daemon = Daemon(
        settings_for(database_url), lambda: settings_for(database_url, Shape(name="other_tasks")),
        ReaperMetrics(registry, "9.9.9"), schedule.Scheduler(), clock=lambda: NOW,
    )
    daemon.run_pass(dry_run=False)
    assert value(samples(registry), "reaper_runs_total", mode="cleanup", outcome="success") == 1
    assert daemon.reload()
    daemon.poll()
    scraped = samples(registry)
    assert value(scraped, "reaper_runs_total", mode="cleanup", outcome="success", table="other_tasks") == 0
    assert value(scraped, "reaper_tasks", status="running", task_type="unknown", table="other_tasks") == 0
    assert not any(("table", "processing_tasks") in labels for _, labels in scraped)


def test_unknown_statuses_beyond_the_cap_are_folded_into_other_so_the_series_stay_few(
    tasks: Tasks, database_url: str
) -> None:
    fill(tasks)
    created = ago(hours=1).replace(tzinfo=None)
    junk = [{"status": f"junk_{n:05d}", "task_type": f"kind_{n % 3}", "created_at": created} for n in range(3000)]
    junk += [{"status": "queued", "task_type": "download", "created_at": created}] * 5  # the largest unknown one
    with tasks.engine.begin() as conn:
        conn.execute(insert(tasks.table), junk)
    daemon, registry = make_daemon(settings_for(database_url))
    assert daemon.poll()
    scraped = samples(registry)
    series = {dict(labels)["status"]: labels for name, labels in scraped if name == "reaper_tasks"}
    kept = {f"junk_{n:05d}" for n in range(MAX_UNKNOWN_STATUSES - 1)}  # after queued, the first by name
    assert set(series) == {*STATUS_ORDER, "queued", *kept, "other"}
    assert value(scraped, "reaper_tasks", status="queued", task_type="download") == 5
    assert sum(count for (name, _), count in scraped.items() if name == "reaper_tasks") == 6 + 3005
    other = [
        count for (name, labels), count in scraped.items() if name == "reaper_tasks" and ("status", "other") in labels
    ]
    assert sum(other) == 3000 - len(kept)
    assert len(generate_latest(registry)) < 20_000
    assert len(render_status_page(daemon.metrics.snapshot, PageContext("processing_tasks", NOW.timestamp()))) < 20_000
