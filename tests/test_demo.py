"""The demo data set is shaped like a video-processing backend's statistics and holds something for every policy."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

from helpers import NOW
from reaper.database.demo import TYPE_COUNTS, demo_rows, ensure_demo_database

NAIVE_NOW = NOW.replace(tzinfo=None)


def test_demo_rows_add_up_to_the_demo_totals_by_status_and_type() -> None:
    rows = list(demo_rows(NAIVE_NOW))
    assert len(rows) == 15420
    assert Counter(row["task_type"] for row in rows) == TYPE_COUNTS
    statuses = Counter(row["status"] for row in rows)
    assert statuses == {"success": 14850, "failure": 500, "retry": 55, "pending": 12, "running": 3}
    assert sum(1 for row in rows if row["created_at"] > NAIVE_NOW - timedelta(hours=24)) == 150


def test_demo_rows_hold_zombies_and_expired_rows() -> None:
    rows = list(demo_rows(NAIVE_NOW))
    zombies = [r for r in rows if r["status"] == "running" and r["started_at"] < NAIVE_NOW - timedelta(hours=24)]
    stuck = [r for r in rows if r["status"] == "pending" and r["created_at"] < NAIVE_NOW - timedelta(hours=2)]
    assert (len(zombies), len(stuck)) == (2, 5)
    assert any(r["completed_at"] is None and r["status"] == "success" for r in rows)


def test_demo_rows_are_the_same_every_time() -> None:
    assert list(demo_rows(NAIVE_NOW)) == list(demo_rows(NAIVE_NOW))


def test_the_demo_database_is_filled_once(tmp_path: Path) -> None:
    path = tmp_path / "demo.sqlite3"
    assert ensure_demo_database(path, NOW) == 15420
    assert ensure_demo_database(path, NOW) == 0
