"""Pausing on replica lag, on real replicas started by these tests as plain processes on 127.0.0.1.

MariaDB: a second server replicating the first one's binary log, made to lag with ``MASTER_DELAY``
or stopped with ``STOP SLAVE``. PostgreSQL: a streaming replica (``pg_basebackup -R``), made to lag
with ``recovery_min_apply_delay`` or stopped. A replica that cannot be reached is in
``test_throttle.py``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from freezegun import freeze_time
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError
from test_cli import run_cli
from test_throttle import purgeable, throttled_run

from helpers import BACKENDS, NOW, Shape, Tasks, ago, create_table, require_server, settings_for
from reaper.database.connection import create_db_engine
from reaper.database.table import open_table
from reaper.engine.reap import RunOptions, run_policies
from reaper.policy.policies import standard_policies
from servers import (
    Server,
    mariadb_replica_status,
    set_mariadb_replica_delay,
    start_mariadb_pair,
    start_postgresql_pair,
)

pytestmark = [pytest.mark.server, pytest.mark.slow]
WAIT_SECONDS = 20.0


def wait_until(what: str, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not ready():
        assert time.monotonic() < deadline, f"{what} did not happen within {WAIT_SECONDS:g} s"
        time.sleep(0.1)


def started_pair(name: str, start: Callable[[], tuple[Server, Server]]) -> Iterator[tuple[Server, Server]]:
    if name not in BACKENDS:
        pytest.skip(f"{name} is not in TEST_DATABASES")
    require_server(name)
    primary, replica = start()
    try:
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()


@pytest.fixture(scope="module")
def mariadb_pair() -> Iterator[tuple[Server, Server]]:
    yield from started_pair("mariadb", start_mariadb_pair)


@pytest.fixture(scope="module")
def postgresql_pair() -> Iterator[tuple[Server, Server]]:
    yield from started_pair("postgresql", start_postgresql_pair)


@dataclass
class Replicated:
    """A test database on the primary, its task table, and the same database's URL on the replica."""

    primary: Server
    replica: Server
    url: str
    replica_url: str
    engine: Engine
    tasks: Tasks

    def replica_rows(self) -> int:
        """The task table's rows as the replica has them so far."""
        engine = create_engine(self.replica_url)
        try:
            with engine.connect() as conn:
                return int(conn.exec_driver_sql("SELECT COUNT(*) FROM processing_tasks").scalar_one())
        except DBAPIError:  # the database or its table has not reached the replica yet
            return -1
        finally:
            engine.dispose()


def caught_up(db: Replicated, seconds: float = 30.0) -> None:
    """Wait until the replica holds the test's table with as many rows as the primary."""
    replica = create_engine(db.replica_url)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            try:
                with replica.connect() as conn:
                    if conn.execute(select(func.count()).select_from(db.tasks.table)).scalar() == db.tasks.count():
                        return
            except DBAPIError:  # the database or the table is not there yet
                pass
            time.sleep(0.2)
    finally:
        replica.dispose()
    raise AssertionError("the replica did not catch up")


def replicated(pair: tuple[Server, Server], undelay: Callable[[Server], None]) -> Iterator[Replicated]:
    """A database of the test's own on the primary; at the end the replica stops lagging, then it is dropped."""
    primary, replica = pair
    name = f"t_{uuid.uuid4().hex[:12]}"
    primary.create_database(name)
    url = primary.url(name)
    engine = create_engine(url)
    try:
        tasks = Tasks(engine, create_table(engine, Shape()), Shape())
        yield Replicated(primary, replica, url, replica.url(name), engine, tasks)
    finally:
        engine.dispose()
        undelay(replica)
        primary.drop_database(name)


@pytest.fixture
def on_mariadb(mariadb_pair: tuple[Server, Server]) -> Iterator[Replicated]:
    yield from replicated(mariadb_pair, lambda replica: set_mariadb_replica_delay(replica, 0))


@pytest.fixture
def on_postgresql(postgresql_pair: tuple[Server, Server]) -> Iterator[Replicated]:
    yield from replicated(postgresql_pair, lambda replica: set_apply_delay(replica, "0"))


def set_apply_delay(replica: Server, delay: str) -> None:
    """Make the PostgreSQL replica replay each transaction ``delay`` after its commit on the primary."""
    replica.admin(f"ALTER SYSTEM SET recovery_min_apply_delay = '{delay}'")
    replica.admin("SELECT pg_reload_conf()")


def reaper_engine(url: str) -> Engine:
    """An engine with reaper's own sessions, as a run has."""
    return create_db_engine(make_url(url))


def test_a_run_waits_while_a_mariadb_replica_lags_and_goes_on_once_it_has_caught_up(on_mariadb: Replicated) -> None:
    db = on_mariadb
    purgeable(db.tasks)
    wait_until("the rows reaching the replica", lambda: db.replica_rows() == 3)
    set_mariadb_replica_delay(db.replica, 60)
    db.tasks.add("running", started_at=ago(minutes=1))  # a write the replica holds back: its lag grows
    wait_until("the replica lagging", lambda: (mariadb_replica_status(db.replica)["Seconds_Behind_Master"] or 0) >= 2)
    settings = settings_for(db.url, max_replica_lag_seconds=1, replica_urls=(db.replica_url,), batch_size=1)
    rows_while_paused: list[int] = []

    def pause(seconds: float) -> None:
        rows_while_paused.append(db.tasks.count())
        if len(rows_while_paused) == 1:
            set_mariadb_replica_delay(db.replica, 0)  # it catches up
        time.sleep(seconds)

    engine = reaper_engine(db.url)
    try:
        run = throttled_run(settings, engine, pause)
    finally:
        engine.dispose()
    assert rows_while_paused[0] == 4  # nothing purged while the replica lagged
    assert run.stop_reason is None and db.tasks.count() == 1
    assert "replica_lag" in run.throttle


def test_a_mariadb_replica_whose_replication_is_stopped_pauses_the_run_and_max_pause_ends_it(
    on_mariadb: Replicated, capsys: pytest.CaptureFixture[str]
) -> None:
    db = on_mariadb
    purgeable(db.tasks)
    before = db.tasks.dump()
    caught_up(db)  # the replica has the table and its rows: what the stopped replica is then asked about
    db.replica.admin("STOP SLAVE SQL_THREAD")
    try:
        with freeze_time(NOW):
            code, out, err = run_cli(capsys, "--once", "--json", "--database-url", db.url, "--max-replica-lag", "5",
                                     "--replica", db.replica_url, "--max-pause", "1")
    finally:
        db.replica.admin("START SLAVE SQL_THREAD")
    document = json.loads(out)
    assert code == 0 and db.tasks.dump() == before
    assert document["stopped_early"] is True and "reports no lag: replication stopped" in document["stop_reason"]
    assert list(document["throttle"]) == ["replica_unavailable"]
    assert f"pausing: replica 127.0.0.1:{db.replica.port} reports no lag" in err


def test_a_run_waits_while_a_postgresql_replica_replays_late_and_goes_on_once_it_has_replayed(
    on_postgresql: Replicated,
) -> None:
    db = on_postgresql
    purgeable(db.tasks)
    wait_until("the rows reaching the replica", lambda: db.replica_rows() == 3)
    set_apply_delay(db.replica, "60s")
    db.tasks.add("running", started_at=ago(minutes=1))  # received by the replica, held back from replay
    wait_until("the replica lagging", lambda: bool(db.replica.admin(
        "SELECT 1 WHERE pg_last_wal_receive_lsn() <> pg_last_wal_replay_lsn() "
        "AND now() - pg_last_xact_replay_timestamp() > interval '1.5 seconds'")))
    settings = settings_for(db.url, max_replica_lag_seconds=1, replica_urls=(db.replica_url,), batch_size=1)
    rows_while_paused: list[int] = []

    def pause(seconds: float) -> None:
        rows_while_paused.append(db.tasks.count())
        if len(rows_while_paused) == 1:
            set_apply_delay(db.replica, "0")  # it replays what it holds
        time.sleep(seconds)

    engine = reaper_engine(db.url)
    try:
        run = throttled_run(settings, engine, pause)
    finally:
        engine.dispose()
    assert rows_while_paused[0] == 4
    assert run.stop_reason is None and db.tasks.count() == 1
    assert "replica_lag" in run.throttle


def test_without_a_replica_url_postgresql_pauses_on_the_replay_lag_of_the_primarys_standbys(
    on_postgresql: Replicated,
) -> None:
    db = on_postgresql
    purgeable(db.tasks)
    wait_until("the rows reaching the replica", lambda: db.replica_rows() == 3)
    db.replica.admin("SELECT pg_wal_replay_pause()")
    try:
        db.tasks.add("running", started_at=ago(minutes=1))  # not replayed: the lag the primary shows grows

        def measured_late() -> bool:
            return bool(db.primary.admin("SELECT 1 FROM pg_stat_replication WHERE replay_lag > interval '2 seconds'"))

        wait_until("the primary measuring the replica's lag", measured_late)
        settings = settings_for(db.url, max_replica_lag_seconds=1, batch_size=1)
        rows_while_paused: list[int] = []

        def pause(seconds: float) -> None:
            rows_while_paused.append(db.tasks.count())
            if len(rows_while_paused) == 1:
                db.replica.admin("SELECT pg_wal_replay_resume()")
            time.sleep(seconds)

        engine = reaper_engine(db.url)
        try:
            run = throttled_run(settings, engine, pause)
        finally:
            engine.dispose()
    finally:
        db.replica.admin("SELECT pg_wal_replay_resume()")
    assert rows_while_paused[0] == 4
    assert run.stop_reason is None and db.tasks.count() == 1
    assert "replica_lag" in run.throttle


def test_a_postgresql_primary_whose_standby_has_stopped_pauses_the_run_and_says_so(
    on_postgresql: Replicated, capsys: pytest.CaptureFixture[str]
) -> None:
    db = on_postgresql
    purgeable(db.tasks)
    before = db.tasks.dump()
    db.replica.stop_process()
    try:
        wait_until("the standby leaving pg_stat_replication",
                   lambda: not db.primary.admin("SELECT 1 FROM pg_stat_replication"))
        with freeze_time(NOW):
            code, out, err = run_cli(capsys, "--once", "--json", "--database-url", db.url,
                                     "--max-replica-lag", "5", "--max-pause", "1")
    finally:
        db.replica.start()
        wait_until("the standby streaming again",
                   lambda: bool(db.primary.admin("SELECT 1 FROM pg_stat_replication WHERE state = 'streaming'")))
    document = json.loads(out)
    assert code == 0 and db.tasks.dump() == before and document["stopped_early"] is True
    assert "pg_stat_replication lists no standby" in document["stop_reason"]
    assert "pausing: pg_stat_replication lists no standby" in err


def test_a_purge_along_the_primary_key_runs_on_a_primary_that_logs_statements(on_mariadb: Replicated) -> None:
    db = on_mariadb
    old = [db.tasks.add("success", finished_at=ago(days=40)) for _ in range(3)]
    young = db.tasks.add("success", finished_at=ago(days=1))
    db.primary.admin("SET GLOBAL binlog_format = 'STATEMENT'")  # sessions opened from now on log statements
    engine = reaper_engine(db.url)
    try:
        # InnoDB refuses a write at READ COMMITTED that must be logged as a statement: the range walk keeps
        # the server's isolation there
        settings = settings_for(db.url)
        run = run_policies(open_table(engine, settings), standard_policies(settings)[3:], NOW, RunOptions())
    finally:
        engine.dispose()
        db.primary.admin("SET GLOBAL binlog_format = 'ROW'")
    assert run.policies["success_retention"].affected == len(old)
    assert db.tasks.count() == 1 and db.tasks.get(young) is not None
