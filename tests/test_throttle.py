"""Pausing on the server's own load: --max-load, --critical-load, --max-pause, and bad SPECs.

The decisions of ``Throttle`` are checked with readings and a clock given by the test; the readings
themselves on real servers, kept busy by sessions that sleep in a query (``SELECT SLEEP`` on
MariaDB, ``pg_sleep`` on PostgreSQL). Replica lag is in ``test_replicas.py``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from freezegun import freeze_time
from loguru import logger
from sqlalchemy.engine import Engine
from test_cli import assert_one_line_error, run_cli
from test_metrics import make_daemon, samples, value

from helpers import NOW, SERVER_BACKENDS, Tasks, ago, open_tasks, settings_for
from reaper.cli.report import render_run
from reaper.engine.cleanup import run_options
from reaper.engine.reap import run_policies
from reaper.engine.throttle import POLL_SECONDS, REREAD_SECONDS, Over, Throttle, open_throttle
from reaper.errors import ConfigError
from reaper.policy.policies import standard_policies
from reaper.results import RunResult
from reaper.settings.model import load_settings
from reaper.settings.throttling import LoadLimit, parse_spec
from servers import Server, free_port

# Three sessions asleep in a query put each server above these, and an idle server below.
BUSY_SPEC = {"mariadb": "Threads_running=3", "postgresql": "active_sessions=2"}
BUSY_NAME = {"mariadb": "Threads_running", "postgresql": "active_sessions"}
SESSIONS = 3
ON_MARIADB = [name for name in SERVER_BACKENDS if name == "mariadb"]  # empty when TEST_DATABASES leaves it out
ON_POSTGRESQL = [name for name in SERVER_BACKENDS if name == "postgresql"]


# --- the throttle's decisions, on readings the test gives ------------------------------------------------


class FakeTime:
    """A clock that moves only when the throttle sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def timer(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def readings(*looks: list[Over]) -> Callable[[], list[Over]]:
    """Return each of ``looks`` in turn, then the last one for ever."""
    queue = list(looks)

    def look() -> list[Over]:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return look


BUSY = Over("Threads_running", "Threads_running = 40, above --max-load 25")


def test_nothing_over_its_limit_lets_the_next_batch_start_at_once() -> None:
    clock = FakeTime()
    throttle = Throttle(readings([]), sleep=clock.sleep, timer=clock.timer)
    assert throttle.wait() is None
    assert clock.slept == [] and throttle.seconds == {}


def test_a_limit_exceeded_pauses_until_it_drops_and_counts_the_seconds_under_its_name() -> None:
    clock = FakeTime()
    lag = Over("replica_lag", "replica db2:3306 lags 9 s, above --max-replica-lag 5")
    throttle = Throttle(readings([BUSY], [BUSY], [lag], []), sleep=clock.sleep, timer=clock.timer)
    assert throttle.wait() is None
    assert clock.slept == [POLL_SECONDS] * 3
    assert throttle.seconds == {"Threads_running": 2 * POLL_SECONDS, "replica_lag": POLL_SECONDS}
    assert throttle.total_seconds == 3 * POLL_SECONDS and throttle.stop_reason is None


def test_critical_load_stops_the_run_without_waiting_and_names_the_variable_and_its_value() -> None:
    clock = FakeTime()
    critical = Over("Threads_running", "Threads_running = 90, above --critical-load 50", critical=True)
    throttle = Throttle(readings([critical, BUSY]), sleep=clock.sleep, timer=clock.timer)
    reason = throttle.wait()
    assert reason == "critical load: Threads_running = 90, above --critical-load 50"
    assert throttle.stop_reason == reason and clock.slept == []


def test_a_pause_as_long_as_max_pause_stops_the_run_as_critical_load_does() -> None:
    clock = FakeTime()
    throttle = Throttle(readings([BUSY]), max_pause_seconds=2, sleep=clock.sleep, timer=clock.timer)
    reason = throttle.wait()
    assert reason is not None and reason.startswith("paused 2 s in a row") and "Threads_running = 40" in reason
    assert sum(clock.slept) == 2 and throttle.stop_reason == reason


def test_a_stop_request_ends_a_pause_and_is_not_taken_for_the_throttle_stopping_the_run() -> None:
    clock = FakeTime()
    throttle = Throttle(readings([BUSY]), sleep=clock.sleep, timer=clock.timer)
    assert throttle.wait(lambda: "stop requested" if clock.slept else None) == "stop requested"
    assert clock.slept == [POLL_SECONDS] and throttle.stop_reason is None


def test_a_clear_reading_is_trusted_for_a_quarter_of_a_second_so_quick_batches_do_not_read_each_time() -> None:
    clock = FakeTime()
    looks: list[float] = []

    def look() -> list[Over]:
        looks.append(clock.now)
        return []

    throttle = Throttle(look, sleep=clock.sleep, timer=clock.timer)
    for step in (0.0, 0.1, 0.1, 0.1):  # batches 0.1 s apart: read at 0, trusted at 0.1 and 0.2, read at 0.3
        clock.now += step
        assert throttle.wait() is None
    assert looks == [100.0, pytest.approx(100.3)]


def test_a_pause_is_logged_when_it_starts_and_when_it_ends_not_at_each_reading() -> None:
    clock = FakeTime()
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), format="{message}")
    try:
        Throttle(readings([BUSY], [BUSY], [BUSY], []), sleep=clock.sleep, timer=clock.timer).wait()
    finally:
        logger.remove(sink)
    assert len(lines) == 2, lines
    assert lines[0].startswith("pausing: Threads_running = 40, above --max-load 25")
    assert lines[1].startswith("resuming after a pause of 1.5 s")


# --- SPECs --------------------------------------------------------------------------------------------


def test_a_spec_gives_each_name_its_limit() -> None:
    assert parse_spec("Threads_running=25, history_list_length=5000") == (
        LoadLimit("Threads_running", 25.0),
        LoadLimit("history_list_length", 5000.0),
    )


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ("Threads_running", "expected NAME=VALUE"),
        ("=25", "expected NAME=VALUE"),
        ("Threads_running=many", "must be a number"),
        ("Threads_running=-1", "at least 0"),
        ("Threads_running=1,threads_running=2", "given twice"),
        ("Threads_running=1,", "expected NAME=VALUE"),
    ],
)
def test_a_malformed_spec_is_refused_saying_what_is_wrong(spec: str, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        parse_spec(spec)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "flags",
    [
        ("--max-load", "Threads_running=25"),
        ("--critical-load", "Threads_running=50"),
        ("--max-replica-lag", "5", "--replica", "sqlite:///replica.db"),
    ],
)
def test_any_load_or_lag_limit_on_sqlite_exits_2_with_one_line_before_anything_runs(
    tasks: Tasks, database_url: str, capsys: pytest.CaptureFixture[str], flags: tuple[str, ...]
) -> None:
    tasks.add("success", finished_at=ago(days=31))
    code, out, err = run_cli(capsys, "--once", "--database-url", database_url, *flags)
    assert code == 2 and out == ""
    assert_one_line_error(err, flags[0])
    assert tasks.count() == 1


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_malformed_spec_in_a_flag_or_the_environment_exits_2_with_one_line(
    tasks: Tasks, database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run_cli(capsys, "--once", "--database-url", database_url, "--max-load", "Threads_running")
    assert code == 2
    assert_one_line_error(err, "--max-load", "expected NAME=VALUE")
    monkeypatch.setenv("REAPER_CRITICAL_LOAD", "Threads_running=lots")
    code, _, err = run_cli(capsys, "--once", "--database-url", database_url)
    assert code == 2
    assert_one_line_error(err, "REAPER_CRITICAL_LOAD", "must be a number")


def test_the_summary_says_how_long_the_run_paused_and_for_what() -> None:
    run = RunResult(dry_run=False, now=NOW, policies={}, duration_seconds=4.0,
                    throttle={"Threads_running": 2.5, "replica_lag": 0.5})
    last = render_run(run, "sqlite:///tasks.db").splitlines()[-1]
    assert last == "0 rows changed (4.00 s, 3.0 s of it paused: Threads_running 2.5 s, replica_lag 0.5 s)."
    assert run.to_json()["throttled_seconds"] == 3.0
    assert run.to_json()["throttle"] == {"Threads_running": 2.5, "replica_lag": 0.5}


# --- real servers kept busy ------------------------------------------------------------------------------


class BusySessions:
    """Sessions of the test login, each asleep in one query, which the server counts as running."""

    def __init__(self, server: Server, count: int = SESSIONS, seconds: float = 60.0) -> None:
        self.server = server
        self.count = count
        self.seconds = seconds
        self.ids: list[int] = []
        self.started = False
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        s = self.server
        if s.name == "mariadb":
            return pymysql.connect(host=s.host, port=s.port, user=s.user, password=s.password, autocommit=True)
        return psycopg.connect(host=s.host, port=s.port, user=s.user, password=s.password, dbname="postgres",
                               autocommit=True)

    def _sleep_in_a_query(self) -> None:
        conn = self._connect()
        try:
            mariadb = self.server.name == "mariadb"
            cursor = conn.cursor()
            cursor.execute("SELECT CONNECTION_ID()" if mariadb else "SELECT pg_backend_pid()")
            with self._lock:
                self.ids.append(int(cursor.fetchone()[0]))
            with contextlib.suppress(psycopg.errors.QueryCanceled, pymysql.err.OperationalError):  # ended by the test
                cursor.execute(f"SELECT {'SLEEP' if mariadb else 'pg_sleep'}({self.seconds})")
        finally:
            conn.close()

    def _asleep(self) -> int:
        if self.server.name == "mariadb":
            query = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(%'"
        else:
            query = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(%'"
        return int(str(self.server.admin(query)[0][0]))

    def start(self) -> BusySessions:
        """Start the sessions and wait (at most 10 s) until the server shows every one asleep."""
        self.started = True
        self._threads = [threading.Thread(target=self._sleep_in_a_query, daemon=True) for _ in range(self.count)]
        for thread in self._threads:
            thread.start()
        deadline = time.monotonic() + 10
        while self._asleep() < self.count:
            assert time.monotonic() < deadline, "the sleeping sessions did not show up"
            time.sleep(0.05)
        return self

    def end(self) -> None:
        """Interrupt every sleep and wait for the sessions to close; again, a no-op."""
        with self._lock:
            sessions, self.ids = self.ids, []
        for session in sessions:
            if self.server.name == "mariadb":
                with contextlib.suppress(pymysql.err.MySQLError):  # its sleep has already ended
                    self.server.admin(f"KILL QUERY {session}")
            else:
                self.server.admin(f"SELECT pg_cancel_backend({session})")
        self.join()

    def join(self) -> None:
        """Wait (bounded) until every sleep has ended."""
        for thread in self._threads:
            thread.join(timeout=self.seconds + 10)

    def __enter__(self) -> BusySessions:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.end()


@pytest.fixture
def load_visible(server: Server | None) -> Iterator[None]:
    """On PostgreSQL, let the test login read every session's state (pg_monitor), as the docs ask."""
    if server is not None and server.name == "postgresql":
        server.admin(f"GRANT pg_monitor TO {server.user}")
        yield
        server.admin(f"REVOKE pg_monitor FROM {server.user}")
        return
    yield


def purgeable(tasks: Tasks, count: int = 3) -> None:
    for _ in range(count):
        tasks.add("success", finished_at=ago(days=31))


def throttled_run(settings: Any, engine: Engine, pause: Callable[[float], None], **options: Any) -> RunResult:
    """Run the four policies as a real cleanup does, the throttle of ``settings`` pausing through ``pause``."""
    table = open_tasks(engine, settings)
    with open_throttle(settings.throttle, table.engine, settings.secrets, sleep=pause) as throttle:
        run_with = replace(run_options(settings, False), throttle=throttle, **options)
        return run_policies(table, standard_policies(settings), NOW, run_with)


@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)
def test_a_busy_server_gets_no_write_until_its_load_drops_then_the_run_finishes(
    tasks: Tasks, database_url: str, reaper_engine: Engine, server: Server, backend: str, load_visible: None
) -> None:
    purgeable(tasks)
    settings = settings_for(database_url, max_load=BUSY_SPEC[backend], batch_size=1)
    rows_while_paused: list[int] = []
    with BusySessions(server) as busy:

        def sleep(seconds: float) -> None:
            rows_while_paused.append(tasks.count())
            if len(rows_while_paused) == 2:
                busy.end()
            time.sleep(seconds)

        run = throttled_run(settings, reaper_engine, sleep)
    assert rows_while_paused[:2] == [3, 3]  # paused before the first batch: nothing written
    assert tasks.count() == 0 and run.stop_reason is None
    assert list(run.throttle) == [BUSY_NAME[backend]] and run.throttled_seconds >= 2 * POLL_SECONDS


@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)
def test_load_that_rises_between_batches_pauses_the_run_before_its_next_batch(
    tasks: Tasks, database_url: str, reaper_engine: Engine, server: Server, backend: str, load_visible: None
) -> None:
    purgeable(tasks)
    settings = settings_for(database_url, max_load=BUSY_SPEC[backend], batch_size=1, sleep_seconds=0.01)
    busy = BusySessions(server)
    rows_while_paused: list[int] = []

    def between_batches(seconds: float) -> None:  # --sleep's pause: the load arrives after the first batch
        if not busy.started:
            busy.start()
            time.sleep(REREAD_SECONDS)  # past the time a clear reading is trusted

    def sleep(seconds: float) -> None:
        rows_while_paused.append(tasks.count())
        busy.end()
        time.sleep(seconds)

    try:
        run = throttled_run(settings, reaper_engine, sleep, sleep=between_batches)
    finally:
        busy.end()
    assert rows_while_paused == [2]  # one batch written, then nothing until the load dropped
    assert tasks.count() == 0 and run.stop_reason is None and run.throttled_seconds > 0


@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)
def test_a_run_paused_by_load_reports_it_in_json_and_in_the_audit_line(
    tasks: Tasks, database_url: str, server: Server, backend: str, load_visible: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    purgeable(tasks)
    busy = BusySessions(server, seconds=3).start()  # the sleeps end on their own
    try:
        with freeze_time(NOW):
            code, out, err = run_cli(capsys, "--once", "--json", "-v", "--database-url", database_url,
                                     "--max-load", BUSY_SPEC[backend])
    finally:
        busy.join()
    document = json.loads(out)
    assert code == 0 and document["stopped_early"] is False and tasks.count() == 0
    name = BUSY_NAME[backend]
    assert list(document["throttle"]) == [name] and document["throttled_seconds"] >= POLL_SECONDS
    assert f"pausing: {name} = " in err and "resuming after a pause of" in err
    audit = json.loads(Path("reaper-audit.jsonl").read_text().splitlines()[-1])
    assert audit["throttle"] == document["throttle"] and audit["settings"]["max_load"] == BUSY_SPEC[backend]


@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)
def test_critical_load_stops_the_run_before_any_write_with_exit_0_and_an_audit_line(
    tasks: Tasks, database_url: str, server: Server, backend: str, load_visible: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    purgeable(tasks)
    before = tasks.dump()
    with BusySessions(server), freeze_time(NOW):
        code, out, _ = run_cli(capsys, "--once", "--json", "--database-url", database_url,
                               "--critical-load", BUSY_SPEC[backend])
    document = json.loads(out)
    assert code == 0 and tasks.dump() == before
    assert document["stopped_early"] is True
    assert document["stop_reason"].startswith(f"critical load: {BUSY_NAME[backend]} = ")
    audit = json.loads(Path("reaper-audit.jsonl").read_text().splitlines()[-1])
    assert audit["stop_reason"] == document["stop_reason"] and audit["affected"] == 0


@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)
def test_the_daemon_counts_a_run_stopped_by_critical_load_and_the_seconds_a_run_paused(
    tasks: Tasks, database_url: str, server: Server, backend: str, load_visible: None
) -> None:
    purgeable(tasks)
    daemon, registry = make_daemon(settings_for(database_url, critical_load=BUSY_SPEC[backend]))
    with BusySessions(server):
        daemon.run_pass(dry_run=False)
    assert value(samples(registry), "reaper_runs_total", mode="cleanup", outcome="stopped") == 1
    assert tasks.count() == 3
    daemon, registry = make_daemon(settings_for(database_url, max_load=BUSY_SPEC[backend]))
    busy = BusySessions(server, seconds=2.5).start()
    try:
        run = daemon.run_pass(dry_run=False)
    finally:
        busy.join()
    assert run is not None and tasks.count() == 0
    scraped = samples(registry)
    assert value(scraped, "reaper_throttled_seconds_total", reason=BUSY_NAME[backend]) == pytest.approx(
        run.throttled_seconds
    )
    assert value(scraped, "reaper_runs_total", mode="cleanup", outcome="success") == 1


@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)
def test_a_load_name_the_server_does_not_know_exits_2_with_one_line_before_anything_runs(
    tasks: Tasks, database_url: str, backend: str, load_visible: None, capsys: pytest.CaptureFixture[str]
) -> None:
    purgeable(tasks)
    before = tasks.dump()
    misspelt = {"mariadb": "Threads_runing=25", "postgresql": "active_session=25"}[backend]
    code, out, err = run_cli(capsys, "--once", "--database-url", database_url, "--max-load", misspelt)
    assert code == 2 and out == ""
    assert_one_line_error(err, "--max-load", repr(misspelt.split("=")[0]))
    assert tasks.dump() == before


@pytest.mark.parametrize("backend", ON_MARIADB, indirect=True)
def test_history_list_length_and_any_numeric_status_variable_are_read_on_mariadb(
    tasks: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    purgeable(tasks)
    spec = "history_list_length=1000000,Threads_connected=100000"
    code, out, _ = run_cli(capsys, "--once", "--json", "--database-url", database_url, "--max-load", spec)
    assert code == 0 and json.loads(out)["throttle"] == {} and tasks.count() == 0
    code, _, err = run_cli(capsys, "--once", "--database-url", database_url,
                           "--max-load", "Innodb_buffer_pool_dump_status=1")
    assert code == 2
    assert_one_line_error(err, "Innodb_buffer_pool_dump_status is not a number")


@pytest.mark.parametrize("backend", ON_POSTGRESQL, indirect=True)
def test_postgresql_load_needs_a_login_that_sees_every_session_and_says_which_role(
    tasks: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    purgeable(tasks)
    code, _, err = run_cli(capsys, "--once", "--database-url", database_url, "--max-load", "oldest_xact_seconds=60")
    assert code == 2
    assert_one_line_error(err, "pg_read_all_stats", "GRANT pg_monitor")
    assert tasks.count() == 3


@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)
def test_a_replica_that_cannot_be_reached_pauses_the_run_and_says_so_and_max_pause_ends_it(
    tasks: Tasks, database_url: str, backend: str, load_visible: None, capsys: pytest.CaptureFixture[str]
) -> None:
    purgeable(tasks)
    before = tasks.dump()
    port = free_port()
    scheme = "mysql+pymysql" if backend == "mariadb" else "postgresql+psycopg"
    replica = f"{scheme}://reaper:replica-secret-pw@127.0.0.1:{port}/app"
    code, out, err = run_cli(capsys, "--once", "--json", "--database-url", database_url,
                             "--max-replica-lag", "5", "--replica", replica, "--max-pause", "1")
    document = json.loads(out)
    assert code == 0 and tasks.dump() == before and document["stopped_early"] is True
    assert document["stop_reason"].startswith("paused 1 s in a row") and f"replica 127.0.0.1:{port}" in err
    assert "cannot be read" in document["stop_reason"] and set(document["throttle"]) == {"replica_unavailable"}
    audit = Path("reaper-audit.jsonl").read_text()
    assert json.loads(audit)["settings"]["replica_urls"] == [replica.replace("replica-secret-pw", "***")]
    assert "replica-secret-pw" not in out + err + audit


@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)
def test_a_replica_url_that_is_no_replica_exits_2_with_one_line_before_anything_runs(
    tasks: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    purgeable(tasks)
    before = tasks.dump()
    code, out, err = run_cli(capsys, "--once", "--database-url", database_url, "--max-replica-lag", "5",
                             "--replica", database_url)
    assert code == 2 and out == "" and tasks.dump() == before
    assert_one_line_error(err, "--replica", "is not a replica")
    assert "reaper-secret-pw" not in err


@pytest.mark.parametrize("backend", ON_MARIADB, indirect=True)
def test_max_replica_lag_on_mariadb_needs_a_replica_url_and_a_replica_of_the_same_kind(
    tasks: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "--once", "--database-url", database_url, "--max-replica-lag", "5")
    assert code == 2
    assert_one_line_error(err, "--max-replica-lag", "needs at least one --replica URL")
    code, _, err = run_cli(capsys, "--once", "--database-url", database_url, "--max-replica-lag", "5",
                           "--replica", "postgresql+psycopg://reaper:other-secret@127.0.0.1/app")
    assert code == 2
    assert_one_line_error(err, "not a replica of a mysql database")
    assert "other-secret" not in err


def test_replica_urls_come_from_the_environment_separated_by_commas_or_from_toml_as_a_list(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    primary = "mysql+pymysql://reaper:pw@db-1/app"
    replicas = ("mysql+pymysql://monitor:secret-1@db-2/app", "mysql+pymysql://monitor:secret-2@db-3/app")
    monkeypatch.setenv("REAPER_REPLICA_URLS", ",".join(replicas))
    settings = load_settings({"database_url": primary, "max_replica_lag_seconds": 5})
    assert settings.throttle.replica_urls == replicas and settings.throttle.max_pause_seconds == 600
    assert {"secret-1", "secret-2"} <= set(settings.secrets)
    monkeypatch.delenv("REAPER_REPLICA_URLS")
    config = tmp_path / "reaper.toml"
    config.write_text(
        f'max_replica_lag_seconds = 5\nreplica_urls = ["{replicas[0]}"]\nmax_load = "Threads_running=25"\n'
    )
    settings = load_settings({"database_url": primary}, config)
    assert settings.throttle.replica_urls == replicas[:1]
    assert settings.throttle.max_load == (LoadLimit("Threads_running", 25.0),)


def test_an_unparsable_replica_url_is_refused_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REAPER_REPLICA_URLS", "monitor:hunter2@db-2")
    with pytest.raises(ConfigError) as refused:
        load_settings({"database_url": "mysql+pymysql://reaper:pw@db-1/app", "max_replica_lag_seconds": 5})
    assert "REAPER_REPLICA_URLS" in str(refused.value) and "hunter2" not in str(refused.value)
