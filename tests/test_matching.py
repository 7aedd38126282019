"""Per-task-type thresholds and the heartbeat rule: which rows each policy matches, and why."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from helpers import (
    NOW,
    WITH_HEARTBEAT_AND_ATTEMPTS,
    Shape,
    Tasks,
    ago,
    change_just_before_the_write,
    settings_for,
)
from reaper.database.table import open_table
from reaper.engine.reap import RunOptions, run_policies
from reaper.policy.policies import standard_policies
from reaper.results import RunResult

# Every behaviour holds on both plans: along the primary key, and along the indexes (see reaper.engine.plans).
pytestmark = pytest.mark.both_plans

# policy, status, the column that dates it, the unit of its threshold, the global threshold
POLICIES = [
    ("running_timeout", "running", "started_at", "hours", 24),
    ("pending_timeout", "pending", "created_at", "hours", 2),
    ("failure_retention", "failure", "finished_at", "days", 7),
    ("success_retention", "success", "finished_at", "days", 30),
]
SETTING = {
    "running_timeout": "running_timeout_hours",
    "pending_timeout": "pending_timeout_hours",
    "failure_retention": "failure_retention_days",
    "success_retention": "success_retention_days",
}
GONE = {"running": "failure", "pending": "failure", "failure": None, "success": None}


def reap(tasks: Tasks, database_url: str, dry_run: bool = False, **overrides: Any) -> RunResult:
    """Run the four policies once at NOW with the given setting overrides."""
    settings = settings_for(database_url, tasks.shape, **overrides)
    table = open_table(tasks.engine, settings)
    return run_policies(table, standard_policies(settings), NOW, RunOptions(dry_run=dry_run, batch_size=2))


def state(tasks: Tasks, task_id: Any) -> str | None:
    """The row's status, or None once deleted."""
    return tasks.status_of(task_id)


@pytest.mark.parametrize("policy, status, dated_by, unit, default", POLICIES)
@pytest.mark.parametrize("factor", [1.5, 0.5], ids=["longer", "shorter"])
def test_each_policy_judges_a_task_type_by_its_own_threshold(
    tasks: Tasks, database_url: str, policy: str, status: str, dated_by: str, unit: str, default: float, factor: float
) -> None:
    own = default * factor
    between = (default + own) / 2  # old enough for one threshold, not for the other
    dates = {"created_at": ago(**{unit: between}), dated_by: ago(**{unit: between})}
    special = tasks.add(status, task_type="video_slice", **dates)
    other = tasks.add(status, task_type="download", **dates)
    run = reap(tasks, database_url, task_types={"video_slice": {SETTING[policy]: own}})
    acted_on, spared = (other, special) if own > default else (special, other)
    assert state(tasks, acted_on) == GONE[status]
    assert state(tasks, spared) == status
    result = run.policies[policy]
    assert (result.rules["*"].matched, result.rules["video_slice"].matched) == ((1, 0) if own > default else (0, 1))


def test_rows_without_a_task_type_follow_the_default_rule(tasks: Tasks, database_url: str) -> None:
    untyped = tasks.add("running", task_type=None, started_at=ago(hours=25))
    typed = tasks.add("running", task_type="video_slice", started_at=ago(hours=25))
    reap(tasks, database_url, task_types={"video_slice": {"running_timeout_hours": 36}})
    assert (state(tasks, untyped), state(tasks, typed)) == ("failure", "running")


def test_the_reason_names_the_threshold_of_the_task_type_that_applied(tasks: Tasks, database_url: str) -> None:
    slow = tasks.add("running", task_type="video_slice", started_at=ago(hours=40))
    fast = tasks.add("running", task_type="download", started_at=ago(hours=2))
    reap(
        tasks,
        database_url,
        task_types={"video_slice": {"running_timeout_hours": 36}, "download": {"running_timeout_hours": 1}},
    )
    assert "over the 36 h limit for video_slice (started_at before 2026-11-28 00:00:00 UTC)" in tasks.get(slow)["error"]
    assert "for over the 1 h limit for download (started_at before 2026-11-29 11:00:00" in tasks.get(fast)["error"]


def test_the_dry_run_counts_each_task_type_by_its_own_threshold(tasks: Tasks, database_url: str) -> None:
    for hours in (25, 30, 40):
        tasks.add("running", task_type="video_slice", started_at=ago(hours=hours))
        tasks.add("running", task_type="download", started_at=ago(hours=hours))
    before = tasks.dump()
    run = reap(tasks, database_url, dry_run=True, task_types={"video_slice": {"running_timeout_hours": 36}})
    assert tasks.dump() == before
    document = json.loads(json.dumps(run.to_json()))
    rules = document["policies"]["running_timeout"]["rules"]
    assert rules["video_slice"]["matched"] == 1 and rules["video_slice"]["threshold"] == "36 h"
    assert rules["*"]["matched"] == 3 and rules["*"]["threshold"] == "24 h"
    assert document["policies"]["running_timeout"]["matched"] == 4


# --- the heartbeat rule --------------------------------------------------------------------------------


@pytest.fixture
def beating(make_tasks: Callable[..., Tasks]) -> Tasks:
    """A task table with a heartbeat column and an attempts column."""
    return make_tasks(Shape(columns=WITH_HEARTBEAT_AND_ATTEMPTS))


def reap_beating(tasks: Tasks, database_url: str, **overrides: Any) -> RunResult:
    """Run the policies with the heartbeat column configured (10 minutes unless overridden)."""
    return reap(
        tasks, database_url, heartbeat_timeout_minutes=overrides.pop("heartbeat_timeout_minutes", 10), **overrides
    )


def test_a_long_running_task_with_a_fresh_heartbeat_stays_running(beating: Tasks, database_url: str) -> None:
    marathon = beating.add("running", started_at=ago(hours=40), heartbeat_at=ago(minutes=2))
    run = reap_beating(beating, database_url)
    assert state(beating, marathon) == "running" and run.policies["running_timeout"].matched == 0


def test_a_running_task_whose_heartbeat_went_silent_is_failed_whatever_its_start(
    beating: Tasks,
    database_url: str,
) -> None:
    silent = beating.add("running", started_at=ago(hours=1), heartbeat_at=ago(minutes=11))
    reap_beating(beating, database_url)
    row = beating.get(silent)
    assert row["status"] == "failure"
    assert "no heartbeat for over the 10 min heartbeat limit (heartbeat_at before 2026-11-29 11:50:00" in row["error"]


def test_a_running_task_that_never_beat_is_judged_by_its_start_time(beating: Tasks, database_url: str) -> None:
    old = beating.add("running", started_at=ago(hours=25))
    young = beating.add("running", started_at=ago(hours=2))
    reap_beating(beating, database_url)
    assert (state(beating, old), state(beating, young)) == ("failure", "running")
    assert "running for over the 24 h limit (started_at before 2026-11-28 12:00:00 UTC)" in beating.get(old)["error"]


def test_a_heartbeat_between_the_select_and_the_write_keeps_the_task_running(
    beating: Tasks, database_url: str, engine: Engine, indexed: bool
) -> None:
    revived = beating.add("running", started_at=ago(hours=1), heartbeat_at=ago(minutes=30))
    dead = beating.add("running", started_at=ago(hours=1), heartbeat_at=ago(minutes=30))
    change_just_before_the_write(engine, beating, revived, heartbeat_at=NOW)
    run = reap_beating(beating, database_url)
    assert (state(beating, revived), state(beating, dead)) == ("running", "failure")
    # Along the primary key one statement finds and fails the rows: the beat came before it looked.
    expected = (2, 1) if indexed else (1, 1)
    assert (run.policies["running_timeout"].matched, run.policies["running_timeout"].affected) == expected


def test_a_task_type_can_have_its_own_heartbeat_limit(beating: Tasks, database_url: str) -> None:
    slow = beating.add("running", task_type="video_slice", started_at=ago(hours=1), heartbeat_at=ago(minutes=20))
    fast = beating.add("running", task_type="download", started_at=ago(hours=1), heartbeat_at=ago(minutes=20))
    reap_beating(beating, database_url, task_types={"video_slice": {"heartbeat_timeout_minutes": 30}})
    assert (state(beating, slow), state(beating, fast)) == ("running", "failure")


def test_without_the_heartbeat_setting_the_column_is_ignored(beating: Tasks, database_url: str) -> None:
    marathon = beating.add("running", started_at=ago(hours=40), heartbeat_at=ago(minutes=2))
    columns = {role: name for role, name in WITH_HEARTBEAT_AND_ATTEMPTS.items() if role != "heartbeat_at"}
    reap(beating, database_url, columns={**columns, "heartbeat_at": ""})
    assert state(beating, marathon) == "failure"
