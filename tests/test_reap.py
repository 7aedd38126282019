"""The four policies, force-clean, dry run, batching and the race-safe write."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Enum, create_engine, event, func, select
from sqlalchemy.engine import Engine

from helpers import NOW, Shape, Tasks, ago, change_just_before_the_write, create_table, settings_for
from reaper.database.table import TaskTable, open_table
from reaper.engine.reap import RunOptions, run_policies
from reaper.engine.selection import segments
from reaper.policy.policies import Policy, force_policy, standard_policies
from reaper.results import RunResult
from reaper.settings.model import Settings

# Every behaviour holds on both plans: along the primary key, and along the indexes (see reaper.engine.plans).
pytestmark = pytest.mark.both_plans


def reap(tasks: Tasks, database_url: str, dry_run: bool = False, **overrides: Any) -> RunResult:
    """Run the four policies once at NOW with the given setting overrides."""
    settings = settings_for(database_url, tasks.shape, **overrides)
    return run_policies(
        open_table(tasks.engine, settings),
        standard_policies(settings),
        NOW,
        RunOptions(dry_run=dry_run, batch_size=settings.batch_size),
    )


def force(tasks: Tasks, database_url: str, status: str, days: float, dry_run: bool = False) -> RunResult:
    """Run one ``--force-status`` policy at NOW."""
    settings = settings_for(database_url, tasks.shape)
    policy = force_policy(status, days)
    return run_policies(open_table(tasks.engine, settings), [policy], NOW, RunOptions(dry_run=dry_run))


# --- the four policies, both sides of each threshold -------------------------------------------


def test_running_task_older_than_timeout_is_marked_failed(tasks: Tasks, database_url: str) -> None:
    zombie = tasks.add("running", created_at=ago(hours=30), started_at=ago(hours=24, seconds=1))
    run = reap(tasks, database_url)
    assert tasks.status_of(zombie) == "failure"
    assert run.policies["running_timeout"].affected == 1


def test_running_task_younger_than_timeout_stays_running(tasks: Tasks, database_url: str) -> None:
    alive = tasks.add("running", created_at=ago(hours=30), started_at=ago(hours=23, minutes=59))
    run = reap(tasks, database_url)
    assert tasks.status_of(alive) == "running"
    assert run.policies["running_timeout"].matched == 0


def test_pending_task_older_than_timeout_is_marked_failed(tasks: Tasks, database_url: str) -> None:
    stuck = tasks.add("pending", created_at=ago(hours=2, seconds=1))
    reap(tasks, database_url)
    assert tasks.status_of(stuck) == "failure"


def test_pending_task_younger_than_timeout_stays_pending(tasks: Tasks, database_url: str) -> None:
    waiting = tasks.add("pending", created_at=ago(hours=1, minutes=59))
    reap(tasks, database_url)
    assert tasks.status_of(waiting) == "pending"


def test_failure_older_than_retention_is_deleted(tasks: Tasks, database_url: str) -> None:
    old = tasks.add("failure", created_at=ago(days=9), finished_at=ago(days=7, seconds=1))
    run = reap(tasks, database_url)
    assert tasks.get(old) is None
    assert run.policies["failure_retention"].affected == 1


def test_failure_younger_than_retention_is_kept(tasks: Tasks, database_url: str) -> None:
    recent = tasks.add("failure", created_at=ago(days=9), finished_at=ago(days=6, hours=23))
    reap(tasks, database_url)
    assert tasks.status_of(recent) == "failure"


def test_success_older_than_retention_is_deleted(tasks: Tasks, database_url: str) -> None:
    old = tasks.add("success", created_at=ago(days=31), finished_at=ago(days=30, seconds=1))
    reap(tasks, database_url)
    assert tasks.get(old) is None


def test_success_younger_than_retention_is_kept(tasks: Tasks, database_url: str) -> None:
    recent = tasks.add("success", created_at=ago(days=31), finished_at=ago(days=29, hours=23))
    reap(tasks, database_url)
    assert tasks.status_of(recent) == "success"


def test_retry_and_revoked_rows_are_left_alone_by_the_four_policies(tasks: Tasks, database_url: str) -> None:
    retry = tasks.add("retry", created_at=ago(days=90), updated_at=ago(days=90))
    revoked = tasks.add("revoked", created_at=ago(days=90), finished_at=ago(days=90))
    reap(tasks, database_url)
    assert (tasks.status_of(retry), tasks.status_of(revoked)) == ("retry", "revoked")


# --- what a failed row says ----------------------------------------------------------------------


def test_failed_row_records_policy_threshold_cutoff_and_finish_time_and_keeps_its_start(
    tasks: Tasks, database_url: str
) -> None:
    zombie = tasks.add("running", created_at=ago(hours=31), started_at=ago(hours=30))
    reap(tasks, database_url)
    row = tasks.get(zombie)
    assert row is not None
    assert row["error"] == (
        "reaper running_timeout: running for over the 24 h limit (started_at before 2026-11-28 12:00:00 UTC); "
        "set to failure at 2026-11-29 12:00:00 UTC"
    )
    assert row["finished_at"] == NOW.replace(tzinfo=None)
    assert row["updated_at"] == NOW.replace(tzinfo=None)
    assert row["started_at"] == ago(hours=30).replace(tzinfo=None)  # its age at the fail: finished_at - started_at


def test_the_reason_names_the_age_column_that_dated_each_row(tasks: Tasks, database_url: str) -> None:
    started = tasks.add("running", created_at=ago(hours=31), started_at=ago(hours=30))
    never_started = tasks.add("running", created_at=ago(hours=31), updated_at=ago(hours=25))
    reap(tasks, database_url)
    assert "(started_at before 2026-11-28 12:00:00 UTC)" in tasks.get(started)["error"]  # type: ignore[index]
    assert "(updated_at before 2026-11-28 12:00:00 UTC)" in tasks.get(never_started)["error"]  # type: ignore[index]


def test_reason_is_cut_to_fit_a_short_error_column(make_tasks: Callable[..., Tasks], database_url: str) -> None:
    tasks = make_tasks(Shape(error_length=40))
    zombie = tasks.add("running", started_at=ago(days=2))
    reap(tasks, database_url)
    reason = tasks.get(zombie)["error"]  # type: ignore[index]  # the row is there
    assert len(reason) == 40 and reason.startswith("reaper running_timeout") and reason.endswith("...")


# --- the finished time and null timestamps -------------------------------------------------------


def test_finished_time_falls_back_to_updated_at_when_completed_at_is_null(tasks: Tasks, database_url: str) -> None:
    old = tasks.add("success", created_at=ago(days=40), updated_at=ago(days=31))
    kept = tasks.add("success", created_at=ago(days=40), updated_at=ago(days=29))
    reap(tasks, database_url)
    assert tasks.get(old) is None
    assert tasks.status_of(kept) == "success"


def test_finished_time_falls_back_to_created_at_when_the_others_are_null(tasks: Tasks, database_url: str) -> None:
    old = tasks.add("failure", created_at=ago(days=8))
    kept = tasks.add("failure", created_at=ago(days=6))
    reap(tasks, database_url)
    assert tasks.get(old) is None
    assert tasks.status_of(kept) == "failure"


def test_completed_at_wins_over_an_older_updated_at(tasks: Tasks, database_url: str) -> None:
    kept = tasks.add("failure", created_at=ago(days=20), updated_at=ago(days=20), finished_at=ago(days=1))
    reap(tasks, database_url)
    assert tasks.status_of(kept) == "failure"


def test_row_without_any_timestamp_is_never_touched(make_tasks: Callable[..., Tasks], database_url: str) -> None:
    tasks = make_tasks()
    undated = [tasks.add(status, created_at=None) for status in ("running", "pending", "failure", "success")]
    run = reap(tasks, database_url)
    assert [tasks.status_of(task) for task in undated] == ["running", "pending", "failure", "success"]
    assert sum(result.matched for result in run.policies.values()) == 0


def test_running_task_without_started_at_is_dated_from_updated_then_created(tasks: Tasks, database_url: str) -> None:
    by_updated = tasks.add("running", created_at=ago(days=3), updated_at=ago(hours=1))
    by_created = tasks.add("running", created_at=ago(days=3))
    reap(tasks, database_url)
    assert tasks.status_of(by_updated) == "running"
    assert tasks.status_of(by_created) == "failure"


# --- dry run ---------------------------------------------------------------------------------------


def seed_one_of_each(tasks: Tasks) -> None:
    """Add one row for every policy to find, and a few it must not."""
    tasks.add("running", started_at=ago(hours=30))
    tasks.add("pending", created_at=ago(hours=5))
    tasks.add("failure", finished_at=ago(days=8))
    tasks.add("success", finished_at=ago(days=31))
    tasks.add("success", finished_at=ago(days=1))
    tasks.add("running", started_at=ago(hours=1))


def test_dry_run_leaves_the_table_unchanged(tasks: Tasks, database_url: str) -> None:
    seed_one_of_each(tasks)
    before = tasks.dump()
    run = reap(tasks, database_url, dry_run=True)
    assert tasks.dump() == before
    assert {name: result.matched for name, result in run.policies.items()} == {
        "running_timeout": 1,
        "pending_timeout": 1,
        "failure_retention": 1,
        "success_retention": 1,
    }
    assert all(result.affected == 0 for result in run.policies.values())


def test_dry_run_leaves_the_sqlite_file_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "tasks.sqlite3"
    engine = create_engine(f"sqlite:///{path}")
    tasks = Tasks(engine, create_table(engine, Shape()), Shape())
    seed_one_of_each(tasks)
    engine.dispose()
    before = path.read_bytes()
    run = reap(tasks, f"sqlite:///{path}", dry_run=True)
    engine.dispose()
    assert path.read_bytes() == before and run.matched == 4


def test_dry_run_matches_what_the_real_run_then_does(tasks: Tasks, database_url: str) -> None:
    seed_one_of_each(tasks)
    dry = reap(tasks, database_url, dry_run=True)
    real = reap(tasks, database_url)
    assert {n: r.matched for n, r in dry.policies.items()} == {n: r.affected for n, r in real.policies.items()}
    assert [r.sample_ids for r in dry.policies.values()] == [r.sample_ids for r in real.policies.values()]


# --- thresholds, batches and the race ----------------------------------------------------------------


def test_custom_thresholds_replace_the_defaults(tasks: Tasks, database_url: str) -> None:
    running = tasks.add("running", started_at=ago(hours=13))
    pending = tasks.add("pending", created_at=ago(minutes=70))
    failure = tasks.add("failure", finished_at=ago(days=4))
    success = tasks.add("success", finished_at=ago(days=8))
    reap(
        tasks,
        database_url,
        running_timeout_hours=12,
        pending_timeout_hours=1,
        failure_retention_days=3,
        success_retention_days=7,
    )
    assert (tasks.status_of(running), tasks.status_of(pending)) == ("failure", "failure")
    assert tasks.get(failure) is None and tasks.get(success) is None


def test_fractional_thresholds_are_honoured(tasks: Tasks, database_url: str) -> None:
    over = tasks.add("pending", created_at=ago(minutes=31))
    under = tasks.add("pending", created_at=ago(minutes=29))
    reap(tasks, database_url, pending_timeout_hours=0.5)
    assert (tasks.status_of(over), tasks.status_of(under)) == ("failure", "pending")


def test_large_matches_are_processed_in_batches_of_batch_size(tasks: Tasks, database_url: str) -> None:
    for _ in range(10):
        tasks.add("success", finished_at=ago(days=40))
    keep = tasks.add("success", finished_at=ago(days=1))
    run = reap(tasks, database_url, batch_size=3)
    result = run.policies["success_retention"]
    assert (result.matched, result.affected, result.batches) == (10, 10, 4)
    assert tasks.count() == 1 and tasks.status_of(keep) == "success"


def test_each_batch_commits_in_its_own_transaction(tasks: Tasks, database_url: str, engine: Engine) -> None:
    for _ in range(4):
        tasks.add("success", finished_at=ago(days=40))
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    settings = settings_for(database_url, tasks.shape, batch_size=2)
    policy = standard_policies(settings)[3]
    run_policies(open_table(engine, settings), [policy], NOW, RunOptions(batch_size=2))
    assert len(commits) >= 2 and tasks.count() == 0


def finish_task_just_before_the_write(engine: Engine, tasks: Tasks, task_id: Any, new_status: str) -> None:
    """Make a 'worker' change ``task_id``'s status after the reaper's SELECT and before its UPDATE or DELETE."""
    change_just_before_the_write(engine, tasks, task_id, status=new_status, finished_at=NOW)


def test_task_finished_between_select_and_update_stays_finished(
    tasks: Tasks, database_url: str, engine: Engine, indexed: bool
) -> None:
    racer = tasks.add("running", started_at=ago(hours=30))
    zombie = tasks.add("running", started_at=ago(hours=30))
    finish_task_just_before_the_write(engine, tasks, racer, "success")
    run = reap(tasks, database_url)
    assert tasks.status_of(racer) == "success"
    assert tasks.status_of(zombie) == "failure"
    # Along the index the rows are read, then written: the racer was matched and left alone. Along the
    # primary key one statement finds and fails them: the racer had finished before it looked.
    expected = (2, 1) if indexed else (1, 1)
    assert (run.policies["running_timeout"].matched, run.policies["running_timeout"].affected) == expected


def test_failure_retried_between_select_and_delete_is_not_deleted(
    tasks: Tasks, database_url: str, engine: Engine
) -> None:
    revived = tasks.add("failure", finished_at=ago(days=10))
    finish_task_just_before_the_write(engine, tasks, revived, "pending")
    run = reap(tasks, database_url)
    assert tasks.status_of(revived) == "pending"
    assert run.policies["failure_retention"].affected == 0


# --- force-clean of one status -------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["failure", "success", "revoked"])
def test_force_on_a_terminal_status_deletes_rows_older_than_the_limit(
    tasks: Tasks, database_url: str, status: str
) -> None:
    old = tasks.add(status, finished_at=ago(days=5, minutes=1))
    young = tasks.add(status, finished_at=ago(days=4, hours=23))
    other = tasks.add("running" if status != "running" else "pending", started_at=ago(days=50))
    run = force(tasks, database_url, status, 5)
    assert tasks.get(old) is None and tasks.status_of(young) == status
    assert tasks.status_of(other) is not None
    assert run.policies[f"force_{status}"].affected == 1


@pytest.mark.parametrize(
    ("status", "age_role"), [("pending", "created_at"), ("running", "started_at"), ("retry", "updated_at")]
)
def test_force_on_an_active_status_fails_rows_older_than_the_limit(
    tasks: Tasks, database_url: str, status: str, age_role: str
) -> None:
    old = tasks.add(status, **{"created_at": ago(days=3), age_role: ago(days=1, minutes=1)})
    young = tasks.add(status, **{"created_at": ago(days=3), age_role: ago(hours=23)})
    run = force(tasks, database_url, status, 1)
    assert tasks.status_of(old) == "failure" and tasks.status_of(young) == status
    assert f"force_{status}" in tasks.get(old)["error"]  # type: ignore[index]  # the row is there
    assert run.policies[f"force_{status}"].affected == 1


def test_force_dry_run_counts_without_writing(tasks: Tasks, database_url: str) -> None:
    old = tasks.add("failure", finished_at=ago(days=6))
    run = force(tasks, database_url, "failure", 5, dry_run=True)
    assert tasks.status_of(old) == "failure" and run.policies["force_failure"].matched == 1


# --- table shapes and vocabularies ----------------------------------------------------------------------


def test_table_with_another_name_and_other_column_names(make_tasks: Callable[..., Tasks], database_url: str) -> None:
    columns = {
        "id": "job_id",
        "status": "state",
        "task_type": "kind",
        "created_at": "enqueued_at",
        "started_at": "began",
        "finished_at": "ended",
        "updated_at": "touched",
        "error": "failure_reason",
    }
    tasks = make_tasks(Shape(name="jobs", columns=columns))
    zombie = tasks.add("running", started_at=ago(hours=25))
    old = tasks.add("success", finished_at=ago(days=31))
    reap(tasks, database_url)
    assert tasks.status_of(zombie) == "failure" and tasks.get(old) is None
    assert "running_timeout" in tasks.get(zombie)["error"]  # type: ignore[index]  # the row is there


def test_upper_case_statuses_are_matched_and_written_upper_case(tasks: Tasks, database_url: str) -> None:
    zombie = tasks.add("RUNNING", started_at=ago(hours=25))
    tasks.add("SUCCESS", finished_at=ago(days=1))
    old = tasks.add("FAILURE", finished_at=ago(days=8))
    reap(tasks, database_url)
    assert tasks.status_of(zombie) == "FAILURE" and tasks.get(old) is None


def test_upper_case_convention_is_followed_when_no_failure_row_exists_yet(tasks: Tasks, database_url: str) -> None:
    zombie = tasks.add("RUNNING", started_at=ago(hours=25))
    reap(tasks, database_url)
    assert tasks.status_of(zombie) == "FAILURE"


def test_a_custom_status_vocabulary_is_used_for_matching_and_writing(tasks: Tasks, database_url: str) -> None:
    vocabulary = {"pending": "queued", "running": "in_progress", "success": "done", "failure": "error"}
    zombie = tasks.add("in_progress", started_at=ago(hours=25))
    waiting = tasks.add("queued", created_at=ago(hours=3))
    old = tasks.add("done", finished_at=ago(days=31))
    reap(tasks, database_url, statuses=vocabulary)
    assert (tasks.status_of(zombie), tasks.status_of(waiting)) == ("error", "error")
    assert tasks.get(old) is None


@pytest.mark.parametrize("missing", ["error", "finished_at", "updated_at", "started_at", "task_type"])
def test_tables_without_an_optional_column_still_work(
    make_tasks: Callable[..., Tasks], database_url: str, missing: str
) -> None:
    columns = {role: (None if role == missing else name) for role, name in Shape().columns.items()}
    tasks = make_tasks(Shape(columns=columns))
    dated = {} if missing == "started_at" else {"started_at": ago(hours=25)}
    zombie = tasks.add("running", created_at=ago(hours=26), **dated)
    old = tasks.add("success", created_at=ago(days=31))
    reap(tasks, database_url)
    assert tasks.status_of(zombie) == "failure" and tasks.get(old) is None


def test_string_uuid_primary_keys_are_batched_correctly(make_tasks: Callable[..., Tasks], database_url: str) -> None:
    tasks = make_tasks(Shape(uuid_ids=True))
    doomed = [tasks.add("success", finished_at=ago(days=40)) for _ in range(7)]
    kept = tasks.add("success", finished_at=ago(days=2))
    run = reap(tasks, database_url, batch_size=2)
    assert all(tasks.get(task) is None for task in doomed) and tasks.status_of(kept) == "success"
    assert run.policies["success_retention"].affected == 7


def test_naive_timestamps_are_read_in_the_configured_time_zone(tasks: Tasks, database_url: str) -> None:
    # Stored as Shanghai wall-clock time (UTC+8): 30 h ago in UTC is written as 22 h ago + 8 h.
    zombie = tasks.add("running", started_at=ago(hours=30) + timedelta(hours=8))
    alive = tasks.add("running", started_at=ago(hours=20) + timedelta(hours=8))
    reap(tasks, database_url, database_timezone="Asia/Shanghai")
    assert (tasks.status_of(zombie), tasks.status_of(alive)) == ("failure", "running")


def test_policy_cutoff_is_now_minus_the_threshold() -> None:
    settings = Settings()
    cutoffs: dict[str, Any] = {policy.name: policy.cutoff(NOW) for policy in standard_policies(settings)}
    assert cutoffs == {
        "running_timeout": NOW - timedelta(hours=24),
        "pending_timeout": NOW - timedelta(hours=2),
        "failure_retention": NOW - timedelta(days=7),
        "success_retention": NOW - timedelta(days=30),
    }
    assert isinstance(force_policy("retry", 1), Policy)


def test_a_stop_request_ends_the_pass_between_batches(tasks: Tasks, database_url: str) -> None:
    for _ in range(6):
        tasks.add("success", finished_at=ago(days=40))
    settings = settings_for(database_url, tasks.shape)
    # The stop request arrives while the first batch is being written.
    options = RunOptions(batch_size=2, stop_requested=lambda: "stop requested" if tasks.count() < 6 else None)
    run = run_policies(open_table(tasks.engine, settings), standard_policies(settings)[3:], NOW, options)
    assert run.stopped_early and run.policies["success_retention"].affected == 2 and tasks.count() == 4


# --- column types as applications create them ------------------------------------------------------------

SQLALCHEMY_ENUM_NAMES = ("PENDING", "RUNNING", "SUCCESS", "FAILURE", "RETRY", "REVOKED")


def test_a_native_enum_of_upper_case_member_names_is_matched_and_written(
    make_tasks: Callable[..., Tasks], database_url: str
) -> None:
    # What SQLAlchemy's Enum(TaskStatus) creates: MySQL ENUM(...), a PostgreSQL enum type, member names.
    tasks = make_tasks(Shape(status_type=Enum(*SQLALCHEMY_ENUM_NAMES, name="taskstatus")))
    zombie = tasks.add("RUNNING", started_at=ago(hours=25))
    stuck = tasks.add("PENDING", created_at=ago(hours=3))
    old = tasks.add("SUCCESS", finished_at=ago(days=31))
    kept = tasks.add("FAILURE", finished_at=ago(days=1))
    run = reap(tasks, database_url)
    assert (tasks.status_of(zombie), tasks.status_of(stuck), tasks.status_of(kept)) == ("FAILURE",) * 3
    assert tasks.get(old) is None and run.affected == 3


def test_an_enum_with_only_some_statuses_still_runs_every_policy(
    make_tasks: Callable[..., Tasks], database_url: str
) -> None:
    tasks = make_tasks(Shape(status_type=Enum("pending", "running", "success", "failure", name="smallstatus")))
    zombie = tasks.add("running", started_at=ago(hours=25))
    run = reap(tasks, database_url)
    assert tasks.status_of(zombie) == "failure" and run.affected == 1
    assert force(tasks, database_url, "revoked", 1).policies["force_revoked"].matched == 0


def test_time_zone_aware_columns_compare_in_utc(make_tasks: Callable[..., Tasks], database_url: str) -> None:
    tasks = make_tasks(Shape(aware_timestamps=True))
    zombie = tasks.add("running", started_at=ago(hours=24, minutes=1))
    alive = tasks.add("running", started_at=ago(hours=23, minutes=59))
    reap(tasks, database_url)
    assert (tasks.status_of(zombie), tasks.status_of(alive)) == ("failure", "running")


def test_fractions_of_a_second_are_kept_at_the_threshold(tasks: Tasks, database_url: str) -> None:
    just_over = tasks.add("pending", created_at=ago(hours=2, microseconds=500_000))
    just_under = tasks.add("pending", created_at=ago(hours=2) + timedelta(microseconds=500_000))
    reap(tasks, database_url)
    assert (tasks.status_of(just_over), tasks.status_of(just_under)) == ("failure", "pending")


def test_rows_of_both_spellings_are_each_counted_once(tasks: Tasks, database_url: str) -> None:
    # Case-sensitive databases hold two spellings; MariaDB's default collation sees one. Either way
    # every row is found, and found once.
    lower = [tasks.add("success", finished_at=ago(days=40)) for _ in range(3)]
    upper = [tasks.add("SUCCESS", finished_at=ago(days=40)) for _ in range(2)]
    dry = reap(tasks, database_url, dry_run=True, batch_size=2)
    assert dry.policies["success_retention"].matched == 5
    real = reap(tasks, database_url, batch_size=2)
    assert real.policies["success_retention"].affected == 5
    assert all(tasks.get(task) is None for task in lower + upper)


def test_max_runtime_stops_the_pass_between_batches_and_says_so(tasks: Tasks, database_url: str) -> None:
    for _ in range(10):
        tasks.add("success", finished_at=ago(days=40))
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    settings = settings_for(database_url, tasks.shape)
    options = RunOptions(batch_size=2, sleep_seconds=1, max_runtime_seconds=2.5, timer=lambda: clock[0], sleep=sleep)
    run = run_policies(open_table(tasks.engine, settings), standard_policies(settings)[3:], NOW, options)
    assert run.stop_reason == "max runtime of 2.5 s reached"
    assert run.policies["success_retention"].stop_reason == run.stop_reason
    # Batches at 0 s, 1 s and 2 s; the pause that ends at 3 s spends the budget, so no batch starts then.
    assert tasks.count() == 4


def test_sleep_pauses_between_batches_only(tasks: Tasks, database_url: str) -> None:
    for _ in range(5):
        tasks.add("success", finished_at=ago(days=40))
    pauses: list[float] = []
    settings = settings_for(database_url, tasks.shape)
    options = RunOptions(batch_size=2, sleep_seconds=0.25, sleep=pauses.append)
    run = run_policies(open_table(tasks.engine, settings), standard_policies(settings)[3:], NOW, options)
    assert run.policies["success_retention"].batches == 3 and pauses == [0.25, 0.25]


def test_sqlite_timestamps_written_without_sqlalchemy_are_paged_without_skipping(tmp_path: Path) -> None:
    # CURRENT_TIMESTAMP ('2026-11-28 06:00:00') and ISO ('2026-11-28T06:00:00') spellings, many rows
    # sharing one second across batch boundaries.
    spellings = ["2026-11-28 06:00:00"] * 10 + ["2026-11-28T05:00:00"] * 10
    url = _sqlite_table(tmp_path / "tasks.sqlite3", "running", "started_at", spellings)
    dry = run_policies(*_open(url, "running_timeout"), NOW, RunOptions(dry_run=True, batch_size=3))
    assert dry.policies["running_timeout"].matched == 20
    real = run_policies(*_open(url, "running_timeout"), NOW, RunOptions(batch_size=3))
    assert real.policies["running_timeout"].affected == 20


def _sqlite_table(path: Path, status: str, dated_by: str, spellings: list[str]) -> str:
    """A SQLite task table written, as text, by an application: one ``status`` row per spelling, in both
    created_at and ``dated_by``, with the index on (status, completed_at, id)."""
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE processing_tasks (id INTEGER PRIMARY KEY, status TEXT, task_type TEXT, created_at DATETIME, "
            "started_at DATETIME, completed_at DATETIME, updated_at DATETIME, error_message TEXT)"
        )
        conn.exec_driver_sql("CREATE INDEX ix_status_completed ON processing_tasks (status, completed_at, id)")
        for spelt in spellings:
            conn.exec_driver_sql(
                f"INSERT INTO processing_tasks (status, created_at, {dated_by}) VALUES (?, ?, ?)",
                (status, spelt, spelt),
            )
    engine.dispose()
    return f"sqlite:///{path}"


def test_sqlite_timestamps_with_an_offset_are_judged_by_the_moment_they_spell_in_a_utc_database(tmp_path: Path) -> None:
    # success_retention's cut-off is 2026-10-30 12:00 UTC; the index bounds the text by its date, and an
    # offset moves a spelling's date away from its moment's by up to a day.
    old = ["2026-10-31T01:00:00+14:00", "2026-10-30T11:59:59.9", "2026-10-30 02:00:00-09:30", "2026-09-01"]
    recent = ["2026-10-29T23:00:00-14:00", "2026-10-30 12:00:01", "2026-10-31T00:00:00+11:00", "2026-11-28"]
    url = _sqlite_table(tmp_path / "tasks.sqlite3", "success", "completed_at", old + recent)
    table, [policy] = _open(url, "success_retention")
    assert run_policies(table, [policy], NOW, RunOptions(dry_run=True)).policies[policy.name].matched == 4
    run_policies(table, [policy], NOW, RunOptions())
    with table.engine.connect() as conn:
        left = [spelt for (spelt,) in conn.exec_driver_sql("SELECT completed_at FROM processing_tasks ORDER BY id")]
    assert left == recent


def test_sqlite_reads_only_the_old_part_of_the_index_for_a_policys_matches(tmp_path: Path) -> None:
    url = _sqlite_table(tmp_path / "tasks.sqlite3", "success", "completed_at", ["2026-09-01 00:00:00"])
    table, [policy] = _open(url, "success_retention")
    where = segments(table, policy, NOW, ["success"])[0].where
    query = select(func.count()).select_from(table.table).where(where).compile(
        table.engine, compile_kwargs={"literal_binds": True})
    with table.engine.connect() as conn:
        plan = " ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}"))
    assert "(status=? AND completed_at<?)" in plan  # a range of the index, not every success in it


def _open(url: str, name: str) -> tuple[TaskTable, list[Policy]]:
    """The task table at ``url`` and its standard policy ``name``."""
    settings = settings_for(url)
    return open_table(create_engine(url), settings), [p for p in standard_policies(settings) if p.name == name]
