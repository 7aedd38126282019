"""The database boundary: the limits each session really gets, and the URL's arguments checked."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import make_url

from helpers import SERVER_BACKENDS, only
from reaper.db import SessionLimits, create_db_engine, whole_units


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
