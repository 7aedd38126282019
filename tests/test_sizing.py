"""Batches that shrink while write transactions run longer than REAPER_BATCH_TIME_SECONDS."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import event

from helpers import NOW, Tasks, ago, settings_for
from reaper.cli import main
from reaper.policies import standard_policies
from reaper.reap import RunOptions, RunResult, run_policies
from reaper.sizing import BatchSizer
from reaper.table import open_table


def test_a_slow_batch_halves_the_next_and_fast_full_batches_double_it_back_to_the_limit() -> None:
    sizer = BatchSizer(1000, target_seconds=0.2)
    sizer.observe(1000, 0.5)
    assert sizer.size == 500
    sizer.observe(500, 0.3)
    assert sizer.size == 250
    sizer.observe(250, 0.15)  # within the target: kept
    assert sizer.size == 250
    sizer.observe(250, 0.05)
    sizer.observe(500, 0.05)
    sizer.observe(1000, 0.01)
    assert sizer.size == 1000  # never above batch_size


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


@pytest.mark.parametrize("status, finished", [("success", {"finished_at": ago(days=31)}), ("running", {"started_at": ago(hours=30)})])
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
