"""The statistics report and its JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, text
from sqlalchemy.dialects import mysql

from helpers import NOW, Shape, Tasks, ago, settings_for
from reaper.database.table import open_table
from reaper.inspect.stats import Stats, Totals, collect_stats, poll_stats, render_report
from reaper.policy.policies import standard_policies
from reaper.settings.model import load_settings

TEN_MINUTES = timedelta(minutes=10)


def stats_of(tasks: Tasks, database_url: str, **overrides: object) -> Stats:
    settings = settings_for(database_url, tasks.shape, **overrides)
    return collect_stats(open_table(tasks.engine, settings), standard_policies(settings), NOW)


def poll_of(
    tasks: Tasks, database_url: str, previous: Totals | None, at: timedelta = timedelta(0)
) -> tuple[Stats, Totals]:
    settings = settings_for(database_url, tasks.shape)
    table = open_table(tasks.engine, settings)
    return poll_stats(table, standard_policies(settings), NOW + at, previous, TEN_MINUTES)


def stats_of_url(engine: Any, database_url: str, **overrides: object) -> Stats:
    """Statistics of a table the test built itself."""
    settings = load_settings({"database_url": database_url, **overrides})
    return collect_stats(open_table(engine, settings), standard_policies(settings), NOW)


def fill(tasks: Tasks) -> None:
    for _ in range(6):
        tasks.add("success", task_type="download", created_at=ago(days=2), finished_at=ago(days=2))
    tasks.add("failure", task_type="video_slice", created_at=ago(hours=3))
    tasks.add("running", task_type="download", created_at=ago(hours=1), started_at=ago(hours=1))
    tasks.add("running", task_type="video_slice", created_at=ago(hours=40), started_at=ago(hours=30))
    tasks.add("pending", task_type="download", created_at=ago(hours=5))


def test_stats_count_by_status_and_type(tasks: Tasks, database_url: str) -> None:
    fill(tasks)
    stats = stats_of(tasks, database_url)
    assert stats.total == 10
    assert stats.by_status == {"pending": 1, "running": 2, "success": 6, "failure": 1, "retry": 0, "revoked": 0}
    assert stats.by_type == {"download": 8, "video_slice": 2}


def test_stats_count_tasks_created_in_the_last_24_hours(tasks: Tasks, database_url: str) -> None:
    fill(tasks)
    assert stats_of(tasks, database_url).created_last_24h == 3


def test_stale_tasks_are_counted_against_the_current_thresholds(tasks: Tasks, database_url: str) -> None:
    fill(tasks)
    default = stats_of(tasks, database_url)
    assert (default.stale["running"].count, default.stale["pending"].count) == (1, 1)
    assert default.stale["running"].by_type == {"video_slice": 1}
    assert default.stale["running"].oldest_age_seconds == 30 * 3600
    strict = stats_of(tasks, database_url, running_timeout_hours=0.5, pending_timeout_hours=6)
    assert (strict.stale["running"].count, strict.stale["pending"].count) == (2, 0)


def test_upper_case_and_unknown_statuses_are_reported_by_role_and_lower_case(tasks: Tasks, database_url: str) -> None:
    tasks.add("RUNNING", task_type=None)
    tasks.add("Paused")
    stats = stats_of(tasks, database_url)
    assert stats.by_status["running"] == 1 and stats.by_status["paused"] == 1
    assert stats.by_type == {"download": 1, "unknown": 1}


def test_the_report_shows_counts_percentages_and_attention_lines(tasks: Tasks, database_url: str) -> None:
    fill(tasks)
    report = render_report(stats_of(tasks, database_url))
    assert "Total tasks: 10" in report
    assert "  success      :      6 ( 60.0%)" in report
    assert "  video_slice        :      2 ( 20.0%)" in report
    assert "Created in the last 24 hours: 3" in report
    assert "running past timeout (>24 h): 1" in report and "pending past timeout (>2 h): 1" in report


def test_the_json_has_the_documented_keys(tasks: Tasks, database_url: str) -> None:
    fill(tasks)
    document = json.loads(json.dumps(stats_of(tasks, database_url).to_json()))
    assert {"total", "by_status", "by_type", "created_last_24h", "stale"} <= set(document)
    assert document["stale"] == {"running": 1, "pending": 1}
    assert document["total"] == 10 and document["created_last_24h"] == 3


def test_an_empty_table_reports_zeros(tasks: Tasks, database_url: str) -> None:
    stats = stats_of(tasks, database_url)
    assert stats.total == 0 and set(stats.by_status.values()) == {0} and stats.stale["running"].count == 0
    assert stats.stale["running"].oldest_age_seconds is None
    assert "Total tasks: 0" in render_report(stats)


def test_zombies_are_counted_by_the_threshold_of_their_task_type(tasks: Tasks, database_url: str) -> None:
    fill(tasks)  # video_slice running for 30 h, download running for 1 h, download pending for 5 h
    stats = stats_of(
        tasks, database_url,
        task_types={"video_slice": {"running_timeout_hours": 36}, "download": {"running_timeout_hours": 0.5}},
    )
    assert stats.stale["running"].by_type == {"download": 1}
    assert stats.stale["running"].thresholds_by_type == {"download": "0.5 h", "video_slice": "36 h"}
    document = json.loads(json.dumps(stats.to_json()))
    assert document["thresholds_by_type"]["running"] == {"download": "0.5 h", "video_slice": "36 h"}
    assert "download >0.5 h; video_slice >36 h" in render_report(stats)


def test_the_json_gives_the_thresholds_also_in_seconds(tasks: Tasks, database_url: str) -> None:
    document = stats_of(tasks, database_url, task_types={"download": {"running_timeout_hours": 0.5}}).to_json()
    assert document["thresholds"] == {"running": "24 h", "pending": "2 h"}
    assert document["threshold_seconds"] == {"running": 86400, "pending": 7200}
    assert document["threshold_seconds_by_type"] == {"running": {"download": 1800}, "pending": {"download": 7200}}
    assert document["heartbeat_threshold_seconds"] == {"running": None, "pending": None}


def test_the_report_is_headed_with_the_tables_own_name(make_tasks: Callable[..., Tasks], database_url: str) -> None:
    jobs = make_tasks(Shape(name="jobs"))
    jobs.add("success", finished_at=ago(days=1))
    report = render_report(stats_of(jobs, database_url))
    assert report.splitlines()[1] == "Statistics of table jobs" and "Processing Tasks" not in report


def test_the_smallest_zombie_ids_of_each_status_are_kept_for_explain(tasks: Tasks, database_url: str) -> None:
    fresh = tasks.add("running", started_at=ago(hours=1))
    running = [tasks.add("running", started_at=ago(hours=30)) for _ in range(7)]
    pending = tasks.add("pending", created_at=ago(hours=5))
    tasks.add("pending", created_at=ago(minutes=5))
    stats, _ = poll_of(tasks, database_url, None)
    assert stats.stale["running"].sample_ids == sorted(running)[:5] and fresh not in stats.stale["running"].sample_ids
    assert stats.stale["pending"].sample_ids == [pending]


def test_a_table_without_zombies_has_no_zombie_ids(tasks: Tasks, database_url: str) -> None:
    tasks.add("running", started_at=ago(hours=1))
    stats, _ = poll_of(tasks, database_url, None)
    assert stats.stale["running"].sample_ids == [] and stats.stale["pending"].sample_ids == []


# --- the daemon's cheaper refresh ------------------------------------------------------------------------------


def test_a_first_poll_counts_exactly_what_the_full_count_does(tasks: Tasks, database_url: str) -> None:
    fill(tasks)
    tasks.add("retry", task_type="extract_audio")
    tasks.add("revoked", task_type="download")
    stats, totals = poll_of(tasks, database_url, None)
    full = stats_of(tasks, database_url)
    assert stats.by_status_and_type == full.by_status_and_type and stats.total == 12
    assert stats.created_last_24h == full.created_last_24h == 5
    assert stats.stale["running"] == full.stale["running"] and stats.stale["pending"] == full.stale["pending"]
    assert stats.totals_at == totals.at == NOW and full.totals_at == NOW
    assert dict(totals.counts) == {
        ("success", "download"): 6, ("failure", "video_slice"): 1, ("revoked", "download"): 1
    }


def test_terminal_counts_are_reused_until_the_totals_interval_passes(tasks: Tasks, database_url: str) -> None:
    fill(tasks)
    _, totals = poll_of(tasks, database_url, None)
    tasks.add("success", task_type="download")
    tasks.add("failure", task_type="download")
    tasks.add("running", task_type="extract_audio", started_at=ago(hours=48))
    tasks.add("pending", task_type="download")
    later, reused = poll_of(tasks, database_url, totals, at=TEN_MINUTES - timedelta(seconds=1))
    assert reused is totals and later.totals_at == NOW  # no full count: the finished rows are those of NOW
    assert later.by_status["success"] == 6 and later.by_status["failure"] == 1
    assert later.by_status["running"] == 3 and later.by_status["pending"] == 2  # the active ones are exact
    assert later.stale["running"].by_type == {"video_slice": 1, "extract_audio": 1}
    due, recounted = poll_of(tasks, database_url, totals, at=TEN_MINUTES)
    assert recounted.at == due.totals_at == NOW + TEN_MINUTES
    assert due.by_status["success"] == 7 and due.by_status["failure"] == 2 and due.total == 14


def test_unknown_and_oddly_spelt_statuses_are_counted_once_among_the_rows_counted_less_often(
    tasks: Tasks, database_url: str
) -> None:
    tasks.add("RUNNING", task_type=None)
    tasks.add("Retry")
    tasks.add("Paused")
    tasks.add("SUCCESS")
    stats, totals = poll_of(tasks, database_url, None)
    assert stats.by_status_and_type == stats_of(tasks, database_url).by_status_and_type
    assert stats.by_status["running"] == 1 and stats.by_status["retry"] == 1
    assert dict(totals.counts) == {("paused", "download"): 1, ("success", "download"): 1}


def test_a_clock_that_went_back_recounts_the_terminal_statuses(tasks: Tasks, database_url: str) -> None:
    tasks.add("success")
    _, totals = poll_of(tasks, database_url, None, at=timedelta(hours=1))
    tasks.add("success")
    stats, recounted = poll_of(tasks, database_url, totals)
    assert recounted.at == NOW and stats.by_status["success"] == 2


# only SQLite keeps timestamps as the application spelt them
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_counts_the_last_24_hours_in_any_text_spelling_of_its_timestamps(tasks: Tasks) -> None:
    spellings = ["2026-11-28 12:00:00", "2026-11-28T12:00:00.5", "2026-11-29T11:59", "2026-11-28 11:59:59.999",
                 "2026-11-28T11:00:00", "2026-11-27 13:00:00", "2025-12-31 23:59:59",
                 "2026-11-27T23:00:00-14:00", "2026-11-28T23:00:00+12:00"]  # 2026-11-28 13:00 and 11:00 UTC
    with tasks.engine.begin() as conn:
        for spelt in spellings:
            insert = "INSERT INTO processing_tasks (status, task_type, created_at) VALUES ('success', 'x', :at)"
            conn.execute(text(insert), {"at": spelt})
    url = str(tasks.engine.url)
    assert stats_of(tasks, url).created_last_24h == 4  # from 2026-11-28 12:00:00, NOW less 24 h, included
    assert poll_of(tasks, url, None)[0].created_last_24h == 4


def test_the_oldest_age_reads_each_column_in_its_own_zone(engine: Any, database_url: str) -> None:
    """A heartbeat stored with its zone, start times stored naive in the database's zone (UTC+8)."""
    aware = DateTime(timezone=True).with_variant(mysql.TIMESTAMP(fsp=6), "mysql", "mariadb")
    naive = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    table = Table(
        "processing_tasks", MetaData(), Column("id", Integer, primary_key=True), Column("status", String(20)),
        Column("task_type", String(32)), Column("created_at", naive), Column("started_at", naive),
        Column("heartbeat_at", aware, nullable=True),
    )
    table.create(engine)
    shanghai = ZoneInfo("Asia/Shanghai")

    def local(moment: datetime) -> datetime:
        return moment.astimezone(shanghai).replace(tzinfo=None)

    with engine.begin() as conn:
        conn.execute(table.insert(), [
            {"status": "running", "task_type": "a", "created_at": local(ago(hours=40)),
             "started_at": local(ago(hours=40)), "heartbeat_at": None},
            {"status": "running", "task_type": "a", "created_at": local(ago(hours=5)),
             "started_at": local(ago(hours=5)),
             "heartbeat_at": (ago(hours=3) if not database_url.startswith("sqlite")
                              else ago(hours=3).replace(tzinfo=None))},
        ])
    columns = {"finished_at": "", "updated_at": "", "error": "", "heartbeat_at": "heartbeat_at"}
    stats = stats_of_url(engine, database_url, columns=columns, database_timezone="Asia/Shanghai")
    assert stats.stale["running"].oldest_age_seconds == 40 * 3600
    assert stats.stale["running"].count == 2  # 40 h without a beat, and a beat 3 h ago
