"""Batches that grow while write transactions are quick and shrink while they run longer than
REAPER_BATCH_TIME_SECONDS."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import event

from helpers import NOW, Tasks, add_age_indexes, ago, settings_for
from reaper.cli.command import main
from reaper.database.table import open_table
from reaper.engine.cleanup import run_options
from reaper.engine.reap import RunOptions, run_policies
from reaper.engine.sizing import MAX_BATCH_SIZE, BatchSizer
from reaper.policy.policies import standard_policies
from reaper.results import RunResult
from reaper.safety.archive import JsonlArchive
from reaper.safety.jsonl import read_jsonl_archive
from reaper.settings.model import load_settings


def test_a_slow_batch_shrinks_the_next_in_proportion_and_fast_full_batches_double_it_back_to_the_first_size() -> None:
    sizer = BatchSizer(1000, target_seconds=0.2)
    sizer.observe(1000, 0.5)
    assert sizer.size == 400  # 2.5 times too slow: the next is 2.5 times smaller
    sizer.observe(400, 0.3)
    assert sizer.size == 200  # at least halved
    sizer.observe(200, 0.15)  # within the target: kept
    assert sizer.size == 200
    sizer.observe(200, 0.05)
    sizer.observe(400, 0.05)
    sizer.observe(800, 0.01)
    assert sizer.size == 1000  # no ceiling: never above the first size


def test_quick_full_batches_grow_up_to_the_ceiling_and_a_slow_one_halves_the_next() -> None:
    sizer = BatchSizer(1000, target_seconds=0.2, ceiling=5000)
    sizer.observe(1000, 0.01)
    assert sizer.size == 2000
    sizer.observe(2000, 0.02)
    sizer.observe(4000, 0.04)
    assert sizer.size == 5000
    sizer.observe(5000, 0.05)
    assert sizer.size == 5000
    sizer.observe(5000, 0.3)
    assert sizer.size == 2500


def test_a_full_batch_between_half_and_80_percent_of_the_target_grows_the_next_toward_80_percent() -> None:
    # where each commit costs a fixed part, a batch twice as large takes less than twice as long: a
    # batch at 56 % of the target must still grow, or batches stay small and commits dominate
    sizer = BatchSizer(2000, target_seconds=0.25, ceiling=50_000)
    sizer.observe(2000, 0.14)
    assert sizer.size == 2857  # 2000 * 0.2 / 0.14
    sizer.observe(2857, 0.17)
    assert sizer.size == 2857  # 0.2 / 0.17 is within the noise of one batch: kept
    sizer.observe(2857, 0.26)
    assert sizer.size == 1428  # over the target: at least halved


def test_a_batch_that_was_not_full_does_not_grow_the_next() -> None:
    sizer = BatchSizer(1000, target_seconds=0.2, ceiling=5000)
    sizer.observe(10, 0.001)  # the last rows of a segment say nothing about a full batch's time
    assert sizer.size == 1000


def test_without_a_target_every_batch_has_the_configured_size() -> None:
    sizer = BatchSizer(100, target_seconds=None)
    sizer.observe(100, 30.0)
    assert sizer.size == 100


def slow_writes(tasks: Tasks, seconds: float) -> None:
    """Make every UPDATE or DELETE of the reaper take ``seconds`` longer, as on a loaded server."""

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(("UPDATE", "DELETE")):
            time.sleep(seconds)

    event.listen(tasks.engine, "before_cursor_execute", before)


@pytest.mark.parametrize(
    "status, finished", [("success", {"finished_at": ago(days=31)}), ("running", {"started_at": ago(hours=30)})]
)
def test_batches_shrink_while_writes_are_slower_than_the_batch_time(
    tasks: Tasks, database_url: str, status: str, finished: dict[str, Any]
) -> None:
    for _ in range(20):
        tasks.add(status, **finished)
    slow_writes(tasks, 0.05)
    settings = settings_for(database_url, tasks.shape)
    table = open_table(tasks.engine, settings)
    options = RunOptions(batch_size=8, batch_time_seconds=0.02)
    run: RunResult = run_policies(table, standard_policies(settings), NOW, options)
    result = run.policies["success_retention" if status == "success" else "running_timeout"]
    assert result.affected == 20
    assert result.batches >= 8  # 8, 4, 2, 1, 1, ...: each slow batch halved the next


def test_the_batch_time_flag_is_validated(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--once", "--batch-time", "-1"]) == 2
    assert "--batch-time" in capsys.readouterr().err


def old_successes(tasks: Tasks, count: int) -> None:
    for _ in range(count):
        tasks.add("success", finished_at=ago(days=31))


def test_a_purge_on_a_quick_database_grows_its_batches_and_deletes_everything(tasks: Tasks, database_url: str) -> None:
    old_successes(tasks, 120)
    fixed = purge_with(tasks, database_url, RunOptions(batch_size=2, batch_time_seconds=30))
    assert (fixed.affected, fixed.batches) == (120, 60)
    old_successes(tasks, 120)
    grown = purge_with(tasks, database_url, RunOptions(batch_size=2, batch_time_seconds=30, max_batch_size=64))
    assert grown.affected == 120
    assert grown.batches <= 7  # 2, 4, 8, 16, 32, 64 ids, then the rest


def test_a_purge_that_archives_never_grows_past_the_batch_size(tasks: Tasks, database_url: str, tmp_path: Any) -> None:
    old_successes(tasks, 30)
    archive = JsonlArchive(tmp_path, tasks.table, NOW, id_column="id")
    options = RunOptions(batch_size=3, batch_time_seconds=30, max_batch_size=64, archive=archive)
    result = purge_with(tasks, database_url, options)
    assert sum(1 for _ in read_jsonl_archive(archive.path)) == 30
    assert (result.affected, result.batches) == (30, 10)


def purge_with(tasks: Tasks, database_url: str, options: RunOptions) -> Any:
    settings = settings_for(database_url, tasks.shape)
    table = open_table(tasks.engine, settings)
    return run_policies(table, standard_policies(settings), NOW, options).policies["success_retention"]


def test_batches_may_grow_to_the_ceiling_while_the_batch_size_is_left_at_its_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REAPER_BATCH_SIZE", raising=False)
    options = run_options(load_settings(), dry_run=False)
    assert (options.batch_size, options.max_batch_size) == (1000, MAX_BATCH_SIZE)


@pytest.mark.parametrize("source", ["flag", "environment", "file"])
def test_a_batch_size_the_user_sets_is_the_most_a_batch_ever_holds(
    source: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.delenv("REAPER_BATCH_SIZE", raising=False)
    config = tmp_path / "reaper.toml"
    config.write_text("batch_size = 1000\n" if source == "file" else "")
    if source == "environment":
        monkeypatch.setenv("REAPER_BATCH_SIZE", "1000")
    settings = load_settings({"batch_size": 1000} if source == "flag" else {}, config)
    options = run_options(settings, dry_run=False)
    assert (options.batch_size, options.max_batch_size) == (1000, 1000)


def test_batches_written_as_id_lists_grow_no_further_than_one_statement_binds(
    tasks: Tasks, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reaper.engine.reap

    for _ in range(20):
        tasks.add("running", started_at=ago(hours=30))
    monkeypatch.setattr(reaper.engine.reap, "MAX_ID_LIST", 4)
    settings = settings_for(database_url, tasks.shape, running_timeout_action="requeue")  # a requeue reads ids
    options = RunOptions(batch_size=2, batch_time_seconds=30, max_batch_size=64)
    result = run_policies(open_table(tasks.engine, settings), standard_policies(settings), NOW, options)
    zombies = result.policies["running_timeout"]
    assert (zombies.affected, zombies.batches) == (20, 6)  # 2, then 4 at a time: never 8


def test_a_quick_batch_that_was_not_full_by_its_own_account_does_not_grow_the_next() -> None:
    sizer = BatchSizer(100, target_seconds=0.2, ceiling=1000)
    sizer.observe(100, 0.001, full=False)  # a stretch of 100 ids with almost no match in it
    assert sizer.size == 100
    sizer.observe(100, 0.001, full=True)
    assert sizer.size == 200
    sizer.restart()
    assert sizer.size == 100


def test_after_a_gap_a_transaction_may_overshoot_up_to_the_ceiling_and_the_next_ones_shrink_back_within_target(
    tasks: Tasks, database_url: str
) -> None:
    add_age_indexes(tasks)  # the matches' span, read from the index, makes the walk along the primary key
    for count, days in ((30, 31), (300, 1), (1000, 31)):  # old rows, a stretch of young ones, old rows
        for _ in range(count):
            tasks.add("success", finished_at=ago(days=days))
    deleted_per_statement: list[int] = []

    def after(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            deleted_per_statement.append(cursor.rowcount)

    event.listen(tasks.engine, "after_cursor_execute", after)
    total = tasks.count()
    # each deleted row costs 10 ms: a batch of more than 100 rows is slower than the 1 s target; the
    # young stretch costs nothing, so the width grows through it up to the ceiling
    options = RunOptions(batch_size=8, batch_time_seconds=1.0, max_batch_size=512,
                         timer=lambda: (total - tasks.count()) * 0.01)
    settings = settings_for(database_url, tasks.shape)
    result = run_policies(open_table(tasks.engine, settings), standard_policies(settings)[3:], NOW, options)
    assert result.policies["success_retention"].affected == 1030
    deleted = deleted_per_statement
    over = [index for index, rows in enumerate(deleted) if rows > 100]
    assert over and max(deleted) <= 512  # the overshoot after the gap, bounded by the ceiling
    assert all(deleted[index + 1] < deleted[index] for index in over)  # each slow one shrinks the next
    assert len(over) <= 2 and all(rows <= 100 for rows in deleted[over[-1] + 1 :])  # then back within target
