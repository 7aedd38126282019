"""The database boundary: the limits each session really gets, the URL's arguments checked, and how
a URL is shown in messages."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from helpers import SERVER_BACKENDS, only
from reaper.database.connection import SessionLimits, create_db_engine, safe_url, url_secrets
from reaper.database.dialects.base import whole_units
from reaper.errors import ConfigError


def session_limits(database_url: str, limits: SessionLimits) -> dict[str, Any]:
    """Ask a session of reaper's engine what its lock and statement time-outs are."""
    engine = create_db_engine(make_url(database_url), limits, must_exist=False)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                return {
                    "lock": conn.exec_driver_sql("SHOW lock_timeout").scalar(),
                    "statement": conn.exec_driver_sql("SHOW statement_timeout").scalar(),
                }
            if engine.dialect.name == "mysql":
                lock, statement = conn.exec_driver_sql(
                    "SELECT @@innodb_lock_wait_timeout, @@max_statement_time"
                ).one()
                return {"lock": int(lock), "statement": float(statement)}
            return {"lock": conn.exec_driver_sql("PRAGMA busy_timeout").scalar()}
    finally:
        engine.dispose()


def test_a_sub_millisecond_lock_timeout_is_rounded_up_not_turned_off(database_url: str, backend: str) -> None:
    found = session_limits(database_url, SessionLimits(lock_timeout_seconds=0.0004))
    expected = {"postgresql": "1ms", "mariadb": 1, "sqlite": 1}[backend]  # MariaDB counts whole seconds
    assert found["lock"] == expected


@pytest.mark.parametrize("backend", only("sqlite"), indirect=True)
def test_a_sqlite_session_caches_up_to_64_mib_of_pages_where_sqlite_keeps_2_mb(database_url: str) -> None:
    engine = create_db_engine(make_url(database_url), must_exist=False)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -64 * 1024  # negative: KiB, not pages
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)  # SQLite has no statement time-out
def test_a_statement_timeout_is_rounded_up_to_the_database_unit(database_url: str, backend: str) -> None:
    found = session_limits(database_url, SessionLimits(statement_timeout_seconds=2.0004))
    assert found["statement"] == {"postgresql": "2001ms", "mariadb": 2.0004}[backend]


@pytest.mark.parametrize(
    ("seconds", "per_second", "units"),
    [(0.0004, 1000, 1), (0.3, 1000, 300), (2.0004, 1000, 2001), (0.0004, 1, 1), (5, 1, 5), (1e-9, 10**6, 1)],
)
def test_time_outs_in_whole_units_round_up_and_never_reach_zero(seconds: float, per_second: int, units: int) -> None:
    assert whole_units(seconds, per_second) == units


@pytest.mark.parametrize("backend", only("postgresql"), indirect=True)
def test_postgresql_options_in_the_url_are_kept_beside_reapers_own(database_url: str) -> None:
    url = database_url + "?options=-c%20search_path%3Dreports&connect_timeout=3"
    engine = create_db_engine(make_url(url), SessionLimits(lock_timeout_seconds=2))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW search_path").scalar() == "reports"
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "2s"
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "url, expected",
    [
        ("mysql+pymysql://app:s3cret@db:3306/tasks", "mysql+pymysql://app:***@db:3306/tasks"),
        ("postgresql+psycopg://app@db/tasks?password=s3cret", "postgresql+psycopg://app@db/tasks?password=***"),
        ("mysql+pymysql://app@db/tasks?passwd=s3cret&charset=utf8mb4",
         "mysql+pymysql://app@db/tasks?charset=utf8mb4&passwd=***"),
        ("postgresql+psycopg://app@db/tasks?sslpassword=s3cret", "postgresql+psycopg://app@db/tasks?sslpassword=***"),
        ("sqlite:///tasks.db", "sqlite:///tasks.db"),
    ],
)
def test_a_url_is_shown_with_every_password_masked(url: str, expected: str) -> None:
    assert safe_url(url) == expected
    assert safe_url(make_url(url)) == expected
    assert all(secret == "s3cret" for secret in url_secrets(make_url(url)))


def test_a_url_that_cannot_be_parsed_is_not_shown_at_all() -> None:
    shown = safe_url("not a url, s3cret")
    assert "s3cret" not in shown and "not shown" in shown


# mysqlclient and psycopg2 (SQLAlchemy 2.0's default for postgresql://) made absent, whatever this machine has.
@pytest.mark.parametrize(
    "url, absent, working",
    [
        ("mysql://app:Sup3rSecret@db-host/app", "MySQLdb", "mysql+pymysql://app:***@db-host/app"),
        ("mariadb://app:Sup3rSecret@db-host:3307/app", "MySQLdb", "mariadb+pymysql://app:***@db-host:3307/app"),
        ("postgresql+psycopg2://app:Sup3rSecret@db-host/app", "psycopg2", "postgresql+psycopg://app:***@db-host/app"),
    ],
)
def test_a_url_whose_driver_is_absent_names_the_url_that_works_with_the_password_masked(
    monkeypatch: pytest.MonkeyPatch, url: str, absent: str, working: str
) -> None:
    monkeypatch.setitem(sys.modules, absent, None)  # an import of it fails, as when it is not installed
    with pytest.raises(ConfigError) as refused:
        create_db_engine(make_url(url))
    message = str(refused.value)
    assert f"use {working}" in message and "Sup3rSecret" not in message and "\n" not in message


def test_a_postgresql_url_without_any_driver_says_how_to_install_one() -> None:
    with pytest.MonkeyPatch.context() as patch:
        for module in ("psycopg", "psycopg2"):
            patch.setitem(sys.modules, module, None)
        with pytest.raises(ConfigError) as refused:
            create_db_engine(make_url("postgresql://app:Sup3rSecret@db-host/app"))
    message = str(refused.value)
    assert "pip install 'task-reaper[postgresql]'" in message and "'reaper[" not in message
    assert "use postgresql+psycopg://app:***@db-host/app" in message and "Sup3rSecret" not in message


def test_a_missing_sqlite_file_is_named_with_what_to_do_instead() -> None:
    with pytest.raises(ConfigError) as refused:
        create_db_engine(make_url("sqlite:///nowhere.db"))
    message = str(refused.value)
    assert "'nowhere.db' does not exist" in message and "--database-url" in message and "--demo" in message
    assert not os.path.exists("nowhere.db")
