"""Shared fixtures: an isolated environment, and a fresh database per test on every backend.

Database tests run on SQLite, MariaDB and PostgreSQL (``TEST_DATABASES``, default all three); the
servers are started by the suite itself as plain processes on 127.0.0.1 (``servers.py``). On a
developer's machine without the server packages those tests are skipped; under ``CI=true`` a server
that cannot start fails the run instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url

import servers
from helpers import BACKENDS, Shape, Tasks, add_age_indexes, create_table, require_server
from reaper.database.connection import SessionLimits, create_db_engine


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``server`` every test that runs on MariaDB or PostgreSQL, however its backend was chosen."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("backend", "sqlite") != "sqlite":
            item.add_marker(pytest.mark.server)


def _start(name: str) -> servers.Server:
    require_server(name)
    return servers.start_mariadb() if name == "mariadb" else servers.start_postgresql()


@pytest.fixture(scope="session")
def running_servers() -> Iterator[dict[str, servers.Server]]:
    """The database servers started so far in this session, by backend name."""
    started: dict[str, servers.Server] = {}
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's REAPER_* variables and .env out of every test; run in an empty folder."""
    for key in list(os.environ):
        if key.startswith("REAPER_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database kind this test runs on."""
    return str(request.param)


@pytest.fixture
def server(backend: str, running_servers: dict[str, servers.Server]) -> servers.Server | None:
    """The running server of this test's backend (``None`` for SQLite)."""
    if backend == "sqlite":
        return None
    if backend not in running_servers:
        running_servers[backend] = _start(backend)
    return running_servers[backend]


@pytest.fixture
def database_url(
    backend: str, server: servers.Server | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A URL of an empty database of its own for this test."""
    if server is None:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'tasks.sqlite3'}"
        return
    name = f"t_{uuid.uuid4().hex[:12]}"
    server.create_database(name)
    yield server.url(name)
    server.drop_database(name)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the test's database."""
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def reaper_engine(tasks: Tasks, database_url: str) -> Iterator[Engine]:
    """The engine the reaper itself would use on the task table: short lock waits.

    0.2 s keeps the locked-row tests quick on SQLite and PostgreSQL; MariaDB's lock wait counts in
    whole seconds, so it waits 1 s there.
    """
    engine = create_db_engine(
        make_url(database_url), SessionLimits(lock_timeout_seconds=0.2, statement_timeout_seconds=30)
    )
    yield engine
    engine.dispose()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test marked ``both_plans`` on a table with only its primary key and on an indexed one."""
    if metafunc.definition.get_closest_marker("both_plans") and "make_tasks" in metafunc.fixturenames:
        metafunc.parametrize("indexed", [False, True], ids=["primary key", "indexed"], indirect=True)


@pytest.fixture
def indexed(request: pytest.FixtureRequest) -> bool:
    """Whether the test's task tables get an index on (status, age column, id) for every age column."""
    return bool(getattr(request, "param", False))


@pytest.fixture
def make_tasks(engine: Engine, indexed: bool) -> Callable[..., Tasks]:
    """Create a task table of a given shape and return helpers to fill and read it."""

    def make(shape: Shape | None = None) -> Tasks:
        shape = shape or Shape()
        tasks = Tasks(engine, create_table(engine, shape), shape)
        if indexed:
            add_age_indexes(tasks)
        return tasks

    return make


@pytest.fixture
def tasks(make_tasks: Callable[..., Tasks]) -> Tasks:
    """The default processing_tasks table."""
    return make_tasks()
