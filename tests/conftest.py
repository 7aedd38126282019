"""Shared fixtures: an isolated environment, and a fresh database per test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from helpers import Shape, Tasks, create_table


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's REAPER_* variables and .env out of every test; run in an empty folder."""
    for key in list(os.environ):
        if key.startswith("REAPER_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A URL of an empty database of its own for this test."""
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'tasks.sqlite3'}"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the test's database."""
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def make_tasks(engine: Engine) -> Callable[..., Tasks]:
    """Create a task table of a given shape and return helpers to fill and read it."""

    def make(shape: Shape | None = None) -> Tasks:
        shape = shape or Shape()
        return Tasks(engine, create_table(engine, shape), shape)

    return make


@pytest.fixture
def tasks(make_tasks: Callable[..., Tasks]) -> Tasks:
    """The default processing_tasks table."""
    return make_tasks()
