"""``reaper --explain ID``: the policy, the threshold, the ages and the verdict for one row."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import Column, DateTime, MetaData, String, Table, Text, Uuid, text
from sqlalchemy.engine import Engine

from helpers import NOW, SERVER_BACKENDS, WITH_HEARTBEAT_AND_ATTEMPTS, Shape, Tasks, ago, settings_for
from reaper.cli.command import main
from reaper.database.table import open_table
from reaper.engine.reap import RunOptions, run_policies
from reaper.inspect.explain import Explanation, explain, render_explanation
from reaper.policy.policies import standard_policies

SLOW_VIDEOS = {"video_slice": {"running_timeout_hours": 36}}


@pytest.fixture
def counted(make_tasks: Callable[..., Tasks]) -> Tasks:
    """A task table with a heartbeat column and an attempts column."""
    return make_tasks(Shape(columns=WITH_HEARTBEAT_AND_ATTEMPTS))


def why(tasks: Tasks, database_url: str, task_id: Any, **overrides: Any) -> Explanation:
    """Explain one row at NOW with the given setting overrides."""
    settings = settings_for(database_url, tasks.shape, **overrides)
    return explain(open_table(tasks.engine, settings), standard_policies(settings), task_id, NOW)


def run_then_status(tasks: Tasks, database_url: str, task_id: Any, **overrides: Any) -> str | None:
    """What a real run at NOW does to the row: the check that the explanation told the truth."""
    settings = settings_for(database_url, tasks.shape, **overrides)
    run_policies(open_table(tasks.engine, settings), standard_policies(settings), NOW, RunOptions())
    return tasks.status_of(task_id)


def test_a_zombie_is_explained_by_the_default_rule_and_then_failed(tasks: Tasks, database_url: str) -> None:
    zombie = tasks.add("running", task_type="download", started_at=ago(hours=30))
    found = why(tasks, database_url, zombie, task_types=SLOW_VIDEOS)
    assert (found.policy, found.rule, found.threshold, found.verdict) == ("running_timeout", "*", "24 h", "failed")
    assert found.dated_by == "started_at" and found.ages["started_at"]["age_seconds"] == 30 * 3600
    assert "over the limit" in found.why
    assert run_then_status(tasks, database_url, zombie, task_types=SLOW_VIDEOS) == "failure"


def test_a_task_type_with_its_own_threshold_is_explained_with_it(tasks: Tasks, database_url: str) -> None:
    slow = tasks.add("running", task_type="video_slice", started_at=ago(hours=30))
    found = why(tasks, database_url, slow, task_types=SLOW_VIDEOS)
    assert (found.rule, found.threshold, found.verdict) == ("video_slice", "36 h", "none")
    assert found.eligible_at == NOW + timedelta(hours=6)
    assert run_then_status(tasks, database_url, slow, task_types=SLOW_VIDEOS) == "running"


def test_a_beating_long_running_task_is_explained_by_its_heartbeat(counted: Tasks, database_url: str) -> None:
    marathon = counted.add("running", started_at=ago(hours=40), heartbeat_at=ago(minutes=2))
    found = why(counted, database_url, marathon)
    assert (found.dated_by, found.heartbeat_threshold, found.verdict) == ("heartbeat_at", "10 min", "none")
    assert found.eligible_at == NOW + timedelta(minutes=8)
    assert "if no heartbeat comes before" in found.why
    assert run_then_status(counted, database_url, marathon) == "running"


def test_a_silent_task_is_explained_as_failed_by_its_heartbeat(counted: Tasks, database_url: str) -> None:
    silent = counted.add("running", started_at=ago(hours=1), heartbeat_at=ago(minutes=15))
    found = why(counted, database_url, silent)
    assert (found.dated_by, found.verdict) == ("heartbeat_at", "failed")
    assert run_then_status(counted, database_url, silent) == "failure"


def test_a_task_that_never_beat_is_explained_by_its_start_time(counted: Tasks, database_url: str) -> None:
    mute = counted.add("running", started_at=ago(hours=25))
    found = why(counted, database_url, mute)
    assert found.ages["heartbeat_at"]["value"] is None
    assert (found.dated_by, found.threshold, found.verdict) == ("started_at", "24 h", "failed")


@pytest.mark.parametrize("attempts, verdict", [(None, "requeued"), (2, "requeued"), (3, "failed")])
def test_requeue_is_explained_with_the_attempts_and_the_bound(
    counted: Tasks, database_url: str, attempts: int | None, verdict: str
) -> None:
    zombie = counted.add("running", started_at=ago(hours=25), attempts=attempts)
    found = why(counted, database_url, zombie, running_timeout_action="requeue", max_attempts=3)
    assert (found.verdict, found.attempts, found.max_attempts) == (verdict, attempts, 3)
    expected = "pending" if verdict == "requeued" else "failure"
    assert run_then_status(counted, database_url, zombie, running_timeout_action="requeue", max_attempts=3) == expected


def test_requeue_without_an_attempts_column_is_explained_as_unbounded(tasks: Tasks, database_url: str) -> None:
    zombie = tasks.add("running", started_at=ago(hours=25))
    found = why(tasks, database_url, zombie, running_timeout_action="requeue")
    assert found.verdict == "requeued" and "no bound" in found.why


def test_an_old_success_is_explained_as_deleted(tasks: Tasks, database_url: str) -> None:
    old = tasks.add("success", finished_at=ago(days=31))
    found = why(tasks, database_url, old)
    assert (found.policy, found.dated_by, found.verdict) == ("success_retention", "finished_at", "deleted")


def test_a_status_without_a_policy_is_left_alone(tasks: Tasks, database_url: str) -> None:
    retrying = tasks.add("retry", updated_at=ago(days=90))
    found = why(tasks, database_url, retrying)
    assert (found.policy, found.verdict) == (None, "none")
    assert "no policy acts on retry rows" in render_explanation(found)


def test_the_command_prints_the_explanation_as_json(
    tasks: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    zombie = tasks.add("running", started_at=ago(hours=30))
    before = tasks.dump()
    with freeze_time(NOW):
        code = main(["--database-url", database_url, "--explain", str(zombie), "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0 and tasks.dump() == before
    assert (document["id"], document["policy"], document["verdict"]) == (zombie, "running_timeout", "failed")
    assert document["ages"]["started_at"]["age_seconds"] == 30 * 3600


def test_the_json_gives_every_limit_also_in_seconds(counted: Tasks, database_url: str) -> None:
    zombie = counted.add("running", task_type="download", started_at=ago(hours=30), heartbeat_at=ago(minutes=20))
    document = why(counted, database_url, zombie, task_types={"download": {"running_timeout_hours": 0.5}}).to_json()
    assert (document["threshold"], document["threshold_seconds"]) == ("0.5 h", 1800)
    assert (document["heartbeat_threshold"], document["heartbeat_threshold_seconds"]) == ("10 min", 600)
    limits = {role: (age["limit"], age["limit_seconds"]) for role, age in document["ages"].items()}
    assert limits["heartbeat_at"] == ("10 min heartbeat", 600) and limits["started_at"] == ("0.5 h", 1800)


@pytest.mark.parametrize(
    "status, age, verdict",
    [
        ("running", {"started_at": ago(hours=30)}, "verdict: would be marked failed: running_timeout"),
        ("success", {"finished_at": ago(days=40)}, "verdict: would be deleted: success_retention"),
        ("running", {"started_at": ago(hours=1)}, "verdict: left alone: running_timeout"),
    ],
)
def test_the_verdict_says_what_the_next_run_would_do_in_words_that_cannot_read_as_an_error(
    tasks: Tasks, database_url: str, status: str, age: dict[str, Any], verdict: str
) -> None:
    text = render_explanation(why(tasks, database_url, tasks.add(status, **age)))
    assert verdict in text.splitlines()[-1] and "verdict: failed" not in text


@pytest.mark.parametrize("given, code, message", [("999999", 1, "no row with id = 999999"), ("abc", 2, "not an id")])
def test_an_unknown_or_malformed_id_is_one_line_and_a_non_zero_exit(
    tasks: Tasks, database_url: str, capsys: pytest.CaptureFixture[str], given: str, code: int, message: str
) -> None:
    assert main(["--database-url", database_url, "--explain", given]) == code
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_status_in_a_spelling_reaper_does_not_match_is_explained_not_judged(tasks: Tasks, database_url: str) -> None:
    odd = tasks.add("rUNNING", started_at=ago(hours=30))
    found = why(tasks, database_url, odd)
    if database_url.startswith("mysql"):  # its default collation ignores case: the spelling matches there
        assert found.verdict == "failed" and run_then_status(tasks, database_url, odd) == "failure"
        return
    assert found.verdict == "none" and "is not one of the spellings reaper matches" in found.why
    assert run_then_status(tasks, database_url, odd) == "rUNNING"


def test_an_empty_id_is_a_usage_error_not_the_daemon(
    tasks: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--database-url", database_url, "--explain", " "]) == 2
    assert "the id is empty" in capsys.readouterr().err


@pytest.mark.parametrize("given", ["99999999999999999999999", "-99999999999999999999999", "1_000", "٣"])
def test_an_id_no_integer_column_can_hold_is_a_usage_error(
    tasks: Tasks, database_url: str, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    assert main(["--database-url", database_url, "--explain", given]) == 2
    err = capsys.readouterr().err
    assert "not an id of processing_tasks" in err and len(err.strip().splitlines()) == 1


def test_an_id_beyond_a_32_bit_id_column_is_a_usage_error_where_the_column_has_32_bits(
    tasks: Tasks, database_url: str, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--database-url", database_url, "--explain", str(2**31)])
    err = capsys.readouterr().err
    if backend == "sqlite":  # an INTEGER PRIMARY KEY has 64 bits there
        assert code == 1 and "no row with id = 2147483648" in err
    else:
        assert code == 2 and "integers from -2147483648 to 2147483647" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)  # SQLite keeps a UUID as CHAR(32) text
def test_a_malformed_uuid_id_is_a_usage_error(
    engine: Engine, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    columns = [Column(name, DateTime()) for name in ("created_at", "started_at", "completed_at", "updated_at")]
    table = Table("processing_tasks", MetaData(), Column("id", Uuid(), primary_key=True),
                  Column("status", String(20)), Column("task_type", String(32)), Column("error_message", Text()),
                  *columns)
    table.create(engine)
    assert main(["--database-url", database_url, "--explain", "not-a-uuid"]) == 2
    err = capsys.readouterr().err
    assert "not an id of processing_tasks (its ids are UUIDs)" in err and len(err.strip().splitlines()) == 1
    assert main(["--database-url", database_url, "--explain", str(uuid.uuid4())]) == 1
    assert "no row with id" in capsys.readouterr().err


@pytest.mark.parametrize("backend", [name for name in SERVER_BACKENDS if name == "postgresql"], indirect=True)
def test_a_column_the_driver_cannot_read_does_not_stop_an_explanation(tasks: Tasks, database_url: str) -> None:
    zombie = tasks.add("running", started_at=ago(hours=30))
    with tasks.engine.begin() as conn:  # psycopg reads no time past 23:59:59, which PostgreSQL's time holds
        conn.execute(text("ALTER TABLE processing_tasks ADD COLUMN window_end time DEFAULT '24:00:00'"))
    found = why(tasks, database_url, zombie)
    assert (found.policy, found.verdict) == ("running_timeout", "failed")
