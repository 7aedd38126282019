"""The failure reason fits its error column, whatever the column's type, length and character set."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import String, Text, create_engine
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine, make_url

from helpers import NOW, Shape, Tasks, ago, create_table, only, settings_for
from reaper.database.table import open_table
from reaper.database.textfit import TextFit
from reaper.engine.reap import RunOptions, run_policies
from reaper.policy.policies import standard_policies
from servers import Server

LONG_TYPE = "transcode_" + "x" * 150  # the reason names it: longer than a TINYTEXT holds
CYRILLIC_TYPE = "нарезка_видео_" * 10  # no latin1 character, two bytes each in UTF-8
EMOJI_TYPE = "thumbnail_\U0001f5bc"  # beyond the Basic Multilingual Plane: utf8mb3 cannot hold it


def failed_reason(tasks: Tasks, database_url: str, task_type: str) -> str:
    """Fail one zombie of ``task_type`` (a type with a threshold of its own, so the reason names it)."""
    zombie = tasks.add("running", started_at=ago(hours=30), task_type=task_type)
    settings = settings_for(database_url, tasks.shape, task_types={task_type: {"running_timeout_hours": 1}})
    table = open_table(tasks.engine, settings)
    run = run_policies(table, standard_policies(settings)[:1], NOW, RunOptions())
    assert run.policies["running_timeout"].affected == 1
    row = tasks.get(zombie)
    assert row is not None and row["status"] == "failure"
    reason = str(row["error"])
    assert reason.startswith("reaper running_timeout: running for over the 1 h limit for ")
    return reason


def cut_to_bytes(limit: int) -> Callable[[str], bool]:
    return lambda reason: len(reason.encode()) <= limit and reason.endswith("...")


# column type, task type, what the reason written must look like
MARIADB_COLUMNS: dict[str, tuple[Any, str, Callable[[str], bool]]] = {
    "tinytext": (mysql.TINYTEXT(), LONG_TYPE, cut_to_bytes(255)),
    "tinytext, multi-byte": (mysql.TINYTEXT(), CYRILLIC_TYPE * 2, lambda r: cut_to_bytes(255)(r) and "нарезка" in r),
    "latin1 text": (mysql.TEXT(charset="latin1"), CYRILLIC_TYPE, lambda r: "for ???????_?????_" in r),
    "latin1 varchar": (
        mysql.VARCHAR(100, charset="latin1"), CYRILLIC_TYPE, lambda r: len(r) == 100 and "for ???????_" in r
    ),
    "latin1 char": (mysql.CHAR(100, charset="latin1"), CYRILLIC_TYPE, lambda r: len(r) == 100 and r.endswith("...")),
    "utf8mb3 tinytext": (mysql.TINYTEXT(charset="utf8mb3"), EMOJI_TYPE, lambda r: "_? (started_at before" in r),
}


@pytest.mark.parametrize("backend", only("mariadb"), indirect=True)
@pytest.mark.parametrize("column", list(MARIADB_COLUMNS))
def test_a_reason_too_long_or_outside_the_character_set_still_fits_a_mariadb_column(
    make_tasks: Callable[..., Tasks], database_url: str, column: str
) -> None:
    error_type, task_type, looks_right = MARIADB_COLUMNS[column]
    tasks = make_tasks(Shape(error_type=error_type, task_type_length=400))
    reason = failed_reason(tasks, database_url, task_type)
    assert looks_right(reason), reason


def test_a_reason_is_cut_to_a_varchar_length_in_characters(
    make_tasks: Callable[..., Tasks], database_url: str
) -> None:
    tasks = make_tasks(Shape(error_type=String(80), task_type_length=400))
    reason = failed_reason(tasks, database_url, CYRILLIC_TYPE)
    assert len(reason) == 80 and reason.endswith("...") and "нарезка" in reason


@pytest.fixture
def latin1_database(server: Server | None, database_url: str) -> Iterator[str]:
    """A PostgreSQL database whose encoding is LATIN1, beside the test's own."""
    assert server is not None
    name = f"t_{uuid.uuid4().hex[:12]}_latin1"
    creator = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with creator.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} ENCODING 'LATIN1' LOCALE 'C' TEMPLATE template0")
    creator.dispose()
    yield server.url(name)
    server.drop_database(name)


@pytest.mark.parametrize("backend", only("postgresql"), indirect=True)
def test_a_reason_is_written_in_a_latin1_postgresql_database(latin1_database: str) -> None:
    engine: Engine = create_engine(make_url(latin1_database))
    try:
        shape = Shape(error_type=Text(), task_type_length=400)
        tasks = Tasks(engine, create_table(engine, shape), shape)
        assert "for vidéo_cut (started_at before" in failed_reason(tasks, latin1_database, "vidéo_cut")
    finally:
        engine.dispose()


def test_a_text_is_cut_by_bytes_without_splitting_a_character() -> None:
    fit = TextFit(max_bytes=10)
    assert fit.fit("ok") == "ok"
    assert fit.fit("ааааааааа") == "ааа..."  # 6 bytes and the dots: a fourth letter would make 11
    assert TextFit(max_bytes=2).fit("абв") == "а"  # too short for the dots


def test_a_text_keeps_only_what_its_character_set_holds() -> None:
    assert TextFit(codec="cp1252").fit("vidéo нарезка €") == "vidéo ??????? €"
    assert TextFit(bmp_only=True).fit("a\U0001f5bcb") == "a?b"
    assert TextFit(codec="ascii", max_chars=6).fit("ééééééé") == "???..."


@pytest.mark.parametrize("declared", [None, 3])
def test_a_column_too_short_for_the_dots_gets_the_start_of_the_text(declared: Any) -> None:
    assert TextFit(max_chars=declared).fit("abcdef") == ("abcdef" if declared is None else "abc")
