"""Test helpers: build task tables of many shapes, add rows, read them back."""

from __future__ import annotations

import glob
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.mysql import DATETIME
from sqlalchemy.engine import Engine, make_url

from reaper.database.connection import create_db_engine
from reaper.database.table import TaskTable, open_table
from reaper.settings.model import Settings, load_settings

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
BACKENDS = [name for name in os.environ.get("TEST_DATABASES", "sqlite,mariadb,postgresql").split(",") if name]
SERVER_BACKENDS = [name for name in BACKENDS if name != "sqlite"]


def only(name: str) -> list[str]:
    """The backends, among those this run tests, that a test of ``name`` alone runs on."""
    return [name] if name in BACKENDS else []

DEFAULT_COLUMNS = {
    "id": "id",
    "status": "status",
    "task_type": "task_type",
    "created_at": "created_at",
    "started_at": "started_at",
    "finished_at": "completed_at",
    "updated_at": "updated_at",
    "error": "error_message",
}


def ago(**delta: float) -> datetime:
    """Return ``NOW`` minus a timedelta given as keywords (hours=25, days=8, ...)."""
    return NOW - timedelta(**delta)


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    """Poll ``condition`` with short sleeps for up to ``seconds``; return whether it came true.

    Sleeps, not a timed wait on an Event or a join: under faketime those never return (see .ci/run).
    """
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def real_ago(**delta: float) -> datetime:
    """Return the real clock's present minus a timedelta: rows for a reaper process, whose clock no test freezes."""
    return datetime.now(UTC) - timedelta(**delta)


@dataclass
class Shape:
    """How a test's task table looks: its name, column names by role, and column types."""

    name: str = "processing_tasks"
    columns: Mapping[str, str | None] = field(default_factory=lambda: dict(DEFAULT_COLUMNS))
    uuid_ids: bool = False
    error_length: int | None = None  # None: TEXT
    error_type: Any = None  # a column type of its own for the error column (overrides error_length)
    task_type_length: int = 32
    status_type: Any = None  # None: String(20)
    aware_timestamps: bool = False

    def column_settings(self) -> dict[str, str]:
        """Return the ``columns`` settings that describe this shape ('' for an absent column)."""
        return {role: name or "" for role, name in self.columns.items()}


def create_table(engine: Engine, shape: Shape | None = None) -> Table:
    """Create the task table of ``shape`` in ``engine``'s database and return it."""
    shape = shape or Shape()
    names = shape.columns
    # MySQL's DATETIME keeps no fraction of a second unless asked, and applications ask.
    stamp = DateTime(timezone=shape.aware_timestamps).with_variant(DATETIME(fsp=6), "mysql", "mariadb")
    columns: list[Column[Any]] = []
    if shape.uuid_ids:
        columns.append(Column(names["id"], String(36), primary_key=True))
    else:
        columns.append(Column(names["id"], Integer, primary_key=True, autoincrement=True))
    columns.append(Column(names["status"], shape.status_type if shape.status_type is not None else String(20)))
    optional: list[tuple[str, Any]] = [
        ("task_type", String(shape.task_type_length)),
        ("created_at", stamp),
        ("started_at", stamp),
        ("finished_at", stamp),
        ("updated_at", stamp),
        ("error", shape.error_type or (String(shape.error_length) if shape.error_length else Text())),
        ("heartbeat_at", stamp),
        ("attempts", Integer()),
    ]
    for role, column_type in optional:
        if names.get(role):
            columns.append(Column(names[role], column_type))
    table = Table(shape.name, MetaData(), *columns)
    table.create(engine)
    return table


@dataclass
class Tasks:
    """A task table in a test database, with helpers that speak in roles, not column names."""

    engine: Engine
    table: Table
    shape: Shape

    def add(self, status: str, **values: Any) -> Any:
        """Insert one task; keywords are roles (created_at=..., finished_at=...); return its id."""
        names = self.shape.columns
        row: dict[str, Any] = {names["status"]: status}
        row[names["created_at"]] = values.pop("created_at", ago(minutes=1))
        if names.get("task_type"):
            row[names["task_type"]] = values.pop("task_type", "download")
        for role, value in values.items():
            if not names.get(role):
                raise KeyError(f"the shape has no {role} column")
            row[names[role]] = value
        for role in ("created_at", "started_at", "finished_at", "updated_at", "heartbeat_at"):
            name = names.get(role)
            if name and isinstance(row.get(name), datetime) and not self.shape.aware_timestamps:
                row[name] = row[name].astimezone(UTC).replace(tzinfo=None)
        if self.shape.uuid_ids:
            row[names["id"]] = str(uuid.uuid4())
        with self.engine.begin() as conn:
            result = conn.execute(insert(self.table).values(row))
            return row[names["id"]] if self.shape.uuid_ids else result.inserted_primary_key[0]

    def get(self, task_id: Any) -> dict[str, Any] | None:
        """Return the row with ``task_id`` keyed by role, or ``None`` when it is gone."""
        names = self.shape.columns
        with self.engine.connect() as conn:
            row = conn.execute(select(self.table).where(self.table.c[names["id"]] == task_id)).mappings().first()
        if row is None:
            return None
        return {role: row[name] for role, name in names.items() if name}

    def status_of(self, task_id: Any) -> str | None:
        """Return the stored status of a task, or ``None`` when it is gone."""
        row = self.get(task_id)
        return None if row is None else row["status"]

    def count(self) -> int:
        """Return the number of rows."""
        with self.engine.connect() as conn:
            return len(conn.execute(select(self.table)).all())

    def dump(self) -> list[tuple[Any, ...]]:
        """Return every row, ordered by id, for before/after comparisons."""
        id_column = self.table.c[self.shape.columns["id"]]
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(select(self.table).order_by(id_column))]


WITH_HEARTBEAT_AND_ATTEMPTS = {**DEFAULT_COLUMNS, "heartbeat_at": "heartbeat_at", "attempts": "attempts"}


SERVER_BINARIES = {"mariadb": "/usr/sbin/mariadbd", "postgresql": "/usr/lib/postgresql/*/bin/postgres"}


def require_server(name: str) -> None:
    """Skip the test when the database server ``name`` is not installed; under CI that is an error."""
    if not glob.glob(SERVER_BINARIES[name]):
        if os.environ.get("CI"):
            raise RuntimeError(f"{name} is not installed; .ci/run must install it")
        pytest.skip(f"{name} is not installed on this machine")


@contextmanager
def row_locked(tasks: Tasks, database_url: str, task_id: Any) -> Iterator[None]:
    """Hold a transaction that locks one row (the whole database on SQLite), as a slow worker would."""
    holder = create_db_engine(make_url(database_url))  # reaper's own kind of session, as the original did
    conn = holder.connect()
    try:
        if database_url.startswith("sqlite"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            id_column = tasks.table.c.id
            conn.execute(select(id_column).where(id_column == task_id).with_for_update())
        yield
    finally:
        conn.rollback()
        conn.close()
        holder.dispose()


def referenced_by_outputs(tasks: Tasks, task_ids: list[Any]) -> None:
    """Create the application's ``task_outputs`` table, whose rows reference ``task_ids`` (foreign key
    ``fk_outputs_task``), so that the database refuses to delete those tasks."""
    outputs = Table(
        "task_outputs",
        tasks.table.metadata,
        Column("id", Integer, primary_key=True),
        Column("task_id", Integer, ForeignKey(tasks.table.c.id, name="fk_outputs_task"), nullable=False),
    )
    outputs.create(tasks.engine)
    with tasks.engine.begin() as conn:
        conn.execute(insert(outputs), [{"task_id": task_id} for task_id in task_ids])


def is_write(statement: str, kinds: tuple[str, ...] = ("UPDATE", "DELETE")) -> bool:
    """Whether ``statement`` is a write of one of ``kinds``, also from inside a WITH clause (PostgreSQL
    sums up a range's write there)."""
    words = " ".join(statement.split()).upper()
    inside_with = words.startswith("WITH") and any(f"AS ({kind}" in words for kind in kinds)
    return words.startswith(kinds) or inside_with


def change_just_before_the_write(engine: Engine, tasks: Tasks, task_id: Any, **values: Any) -> None:
    """Make a 'worker' set ``values`` (by role) on ``task_id`` after the reaper's SELECT, before its write."""
    worker = create_engine(engine.url)  # a connection of its own, as a worker process would have
    names = tasks.shape.columns
    plain = {
        names[role]: value.astimezone(UTC).replace(tzinfo=None) if isinstance(value, datetime) else value
        for role, value in values.items()
    }
    change = update(tasks.table).where(tasks.table.c[names["id"]] == task_id).values(plain)
    done: list[bool] = []

    def before_write(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not done and is_write(statement):
            done.append(True)
            with worker.begin() as worker_conn:
                worker_conn.execute(change)
            worker.dispose()

    event.listen(engine, "before_cursor_execute", before_write)


def add_age_indexes(tasks: Tasks) -> None:
    """Index (status, age column, id) for every age column of the table, so that an index serves every
    policy's reads whatever its settings (and (created_at) for the statistics)."""
    names = tasks.shape.columns
    table = tasks.table
    status, task_id = table.c[names["status"]], table.c[names["id"]]
    for role in ("created_at", "started_at", "finished_at", "updated_at", "heartbeat_at"):
        if names.get(role):
            Index(f"ix_{table.name}_{role}", status, table.c[names[role]], task_id).create(tasks.engine)
    Index(f"ix_{table.name}_created", table.c[names["created_at"]]).create(tasks.engine)


def settings_for(url: str, shape: Shape | None = None, **overrides: Any) -> Settings:
    """Return settings for a test database and table shape, with extra overrides."""
    shape = shape or Shape()
    values: dict[str, Any] = {"database_url": url, "table": shape.name, "columns": shape.column_settings()}
    values.update(overrides)
    return load_settings(values)


def open_tasks(engine: Engine, settings: Settings) -> TaskTable:
    """Reflect the test table the way the CLI does."""
    return open_table(engine, settings)
