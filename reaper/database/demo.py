"""The demo data set: a SQLite file shaped like a video-processing backend's statistics, zombies included.

About 15,000 tasks of that backend over the last 60 days: mostly
successes, some failures and retries, a few pending and running tasks of which some are zombies,
and expired failures and successes for the retention policies to find. The data are made from a
fixed random seed relative to ``now``, so two demo databases made at the same moment are equal.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    func,
    insert,
    inspect,
    select,
)

DEMO_FILE = "reaper-demo.sqlite3"
DEMO_SEED = 20261129
HISTORY_DAYS = 60

# That backend's "by type" counts; they add up to its total of 15,420.
TYPE_COUNTS = {
    "download": 5000,
    "extract_audio": 5000,
    "generate_srt": 5000,
    "video_slice": 300,
    "capcut_export": 100,
    "jianying_export": 20,
}
RECENT_TASKS = 150  # created in the last 24 hours, as in that backend's report


def demo_table(metadata: MetaData, name: str = "processing_tasks") -> Table:
    """Return the demo's ``processing_tasks`` table, shaped as a typical application declares it."""
    return Table(
        name,
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("task_type", String(32), nullable=False, index=True),
        Column("status", String(16), nullable=False),
        Column("progress", Integer, nullable=False, default=0),
        Column("created_at", DateTime, nullable=False),
        Column("started_at", DateTime),
        Column("completed_at", DateTime),
        Column("updated_at", DateTime),
        Column("error_message", Text),
    )


def _status_plan(rng: random.Random) -> list[tuple[str, str]]:
    """Return (status, flavour) for every task; flavour says how its times are drawn."""
    plan = [("running", "zombie")] * 2 + [("running", "fresh")]
    plan += [("pending", "zombie")] * 5 + [("pending", "fresh")] * 7
    plan += [("retry", "any")] * 55 + [("failure", "any")] * 500
    plan += [("success", "any")] * (sum(TYPE_COUNTS.values()) - len(plan))
    rng.shuffle(plan)
    return plan


def _row(now: datetime, status: str, flavour: str, recent: bool, rng: random.Random) -> dict[str, Any]:
    if flavour == "zombie":
        hours = rng.uniform(26, 96) if status == "running" else rng.uniform(3, 20)
        created = now - timedelta(hours=hours + (0.2 if status == "running" else 0))
    elif flavour == "fresh":
        created = now - timedelta(minutes=rng.uniform(5, 50))
    elif recent:
        created = now - timedelta(hours=rng.uniform(0.5, 23.5))
    else:
        created = now - timedelta(days=rng.uniform(1, HISTORY_DAYS))
    row: dict[str, Any] = dict.fromkeys(("started_at", "completed_at", "error_message"))
    row.update(status=status, created_at=created, updated_at=created, progress=0)
    if status == "pending":
        return row
    started = created + timedelta(seconds=rng.uniform(1, 600)) if flavour != "zombie" else created
    row.update(started_at=started, updated_at=started)
    if status in ("success", "failure", "retry"):
        finished = min(started + timedelta(seconds=rng.uniform(5, 1800)), now)
        row.update(updated_at=finished, progress=100 if status == "success" else rng.randint(0, 99))
        if status != "retry" and rng.random() > 0.1:  # real tables leave completed_at null now and then
            row["completed_at"] = finished
        if status != "success":
            row["error_message"] = rng.choice(["ffmpeg exited with 1", "download timed out", "disk full"])
    return row


def demo_rows(now: datetime) -> Iterator[dict[str, Any]]:
    """Yield the demo's rows, made deterministically relative to ``now`` (naive UTC)."""
    rng = random.Random(DEMO_SEED)
    types = [name for name, count in TYPE_COUNTS.items() for _ in range(count)]
    rng.shuffle(types)
    plan = _status_plan(rng)
    ordinary = [index for index, (_, flavour) in enumerate(plan) if flavour == "any"]
    # Fresh tasks and pending zombies (hours old) are among the tasks of the last 24 hours too.
    fresh = sum(1 for status, flavour in plan if flavour == "fresh" or (flavour, status) == ("zombie", "pending"))
    recent = set(rng.sample(ordinary, RECENT_TASKS - fresh))
    rows = [_row(now, status, flavour, index in recent, rng) | {"task_type": types[index]}
            for index, (status, flavour) in enumerate(plan)]
    # Ids grow with creation time, as an auto-increment key does.
    yield from sorted(rows, key=lambda row: row["created_at"])


def ensure_demo_database(path: Path, now: datetime, table_name: str = "processing_tasks") -> int:
    """Create the demo database at ``path`` and fill it if its table is empty; return rows added."""
    engine = create_engine(f"sqlite:///{path}")
    try:
        metadata = MetaData()
        table = demo_table(metadata, table_name)
        if not inspect(engine).has_table(table_name):
            metadata.create_all(engine)
        with engine.begin() as conn:
            if conn.execute(select(func.count()).select_from(table)).scalar_one():
                return 0
            rows = list(demo_rows(now.replace(tzinfo=None)))
            conn.execute(insert(table), rows)
            return len(rows)
    finally:
        engine.dispose()
