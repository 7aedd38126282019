"""The runs of earlier processes, read back from the audit log for the status page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import schedule
from prometheus_client import CollectorRegistry

from helpers import NOW, Tasks, ago, settings_for
from reaper.daemon.history import audit_runs
from reaper.daemon.loop import Daemon
from reaper.daemon.metrics import ReaperMetrics

DATABASE = "mysql+pymysql://reaper:***@db/app"


def audit_line(mode: str = "scheduled", table: str = "processing_tasks", **changes: Any) -> dict[str, Any]:
    """An audit line as ``audit.audit_record`` writes it (the keys the page reads)."""
    line = {
        "time": NOW.isoformat(), "mode": mode, "database": DATABASE, "settings": {"table": table},
        "policies": {
            "running_timeout": {"matched": 3, "affected": 2, "skipped": 1},
            "success_retention": {"matched": 1200, "affected": 1200, "skipped": 0},
        },
        "affected": 1202, "duration_seconds": 4.5, "stop_reason": None,
    }
    return line | changes


def write_lines(path: Path, *lines: dict[str, Any] | str) -> Path:
    with open(path, "a", encoding="utf-8") as handle:
        for line in lines:
            handle.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    return path


def test_a_cleanup_of_the_daemon_is_read_back_from_the_audit_log_after_a_restart(
    tasks: Tasks, database_url: str, tmp_path: Path
) -> None:
    tasks.add("running", started_at=ago(hours=30))
    tasks.add("success", finished_at=ago(days=40))
    settings = settings_for(database_url, audit_log=str(tmp_path / "audit.jsonl"))
    metrics = ReaperMetrics(CollectorRegistry(), "test")
    Daemon(settings, lambda: settings, metrics, schedule.Scheduler(), clock=lambda: NOW).run_pass(dry_run=False)
    (run,) = audit_runs(settings.audit_log, settings.table, settings.safe_database_url)
    (before,) = metrics.snapshot.recent_runs
    assert (run.mode, run.outcome, run.matched, run.affected, run.skipped) == ("cleanup", "success", 2, 2, 0)
    assert run.origin == "scheduled" and dict(run.policies) == dict(before.policies)
    assert abs(run.at - NOW.timestamp()) < 60


def test_recent_runs_come_newest_first_with_their_counts_and_outcome(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "audit.jsonl",
        audit_line("scheduled"), audit_line("once", stop_reason="max runtime"), audit_line("force", affected=5),
    )
    force, once, scheduled = audit_runs(path, "processing_tasks", DATABASE)
    assert (force.mode, force.origin, force.affected) == ("force_status", "force", 5)
    assert (once.mode, once.origin, once.outcome) == ("cleanup", "once", "stopped")
    assert (scheduled.outcome, scheduled.matched, scheduled.affected, scheduled.skipped) == ("success", 1203, 1202, 1)
    assert scheduled.at == NOW.timestamp() + 4.5  # when it ended, as the daemon records its own runs
    assert len(audit_runs(path, "processing_tasks", DATABASE, limit=2)) == 2


def test_lines_of_another_table_or_database_and_broken_lines_are_passed_over(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "audit.jsonl",
        audit_line(affected=1), audit_line(table="jobs"), audit_line(database="sqlite:///other.db"),
        "not json", json.dumps({"time": "yesterday"}), '{"time": "2026-11-29T12:00:00+00:00", "mo',
    )
    assert [run.affected for run in audit_runs(path, "processing_tasks", DATABASE)] == [1]


def test_only_the_end_of_a_long_audit_log_is_read(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "audit.jsonl", *(audit_line(affected=number) for number in range(2000)))
    runs = audit_runs(path, "processing_tasks", DATABASE, limit=100, max_bytes=4096)
    assert 0 < len(runs) < 20 and runs[0].affected == 1999  # the last lines, the first one read cut and dropped
    assert [run.affected for run in runs] == list(range(1999, 1999 - len(runs), -1))


def test_no_audit_log_means_no_earlier_runs(tmp_path: Path) -> None:
    assert audit_runs(tmp_path / "missing.jsonl", "processing_tasks", DATABASE) == ()
    assert audit_runs(None, "processing_tasks", DATABASE) == ()
    assert audit_runs(tmp_path, "processing_tasks", DATABASE) == ()  # a folder: a warning, not a failure
