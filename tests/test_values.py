"""Every value kept exactly: a table with a column of each type each database has, archived (jsonl and
table) and restored, compared with what the database itself stored."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import DateTime, Float, Integer, LargeBinary, Numeric, String, Uuid, text
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Engine

from helpers import NOW, Tasks, ago, settings_for
from reaper.database.table import TaskTable, open_table
from reaper.database.values import exact_type, from_json, to_json
from reaper.engine.reap import RunOptions, run_policies
from reaper.policy.policies import standard_policies
from reaper.results import RunResult
from reaper.safety.archive import JsonlArchive, TableArchive
from reaper.safety.jsonl import read_jsonl_archive
from reaper.safety.restore import restore_archive

# name -> (column type, a value as SQL), per database: the edges of each type, and the values
# SQLAlchemy's own conversions changed (MariaDB's DOUBLE as a 10-place decimal, JSON's 2.50, a
# month of interval, a TIME past 24 hours, SQLite text read as a date or a number).
TYPED_COLUMNS: dict[str, dict[str, tuple[str, str]]] = {
    "sqlite": {
        "i": ("INTEGER", "9223372036854775807"),
        "r": ("REAL", "1.5e-12"),
        "n": ("NUMERIC", "3.141592653589793"),
        "n4": ("NUMERIC(10, 4)", "1.5e-12"),
        "t": ("TEXT", "'héllo ✓'"),
        "b": ("BLOB", "X'00FF10'"),
        "dt": ("DATETIME", "'2026-11-29T10:00:00+02:00'"),
        "bo": ("BOOLEAN", "2"),
        "js": ("JSON", """'{"a": 2.50,  "b": [1]}'"""),
        "untyped": ("", "X'0102'"),
        "vc": ("VARCHAR(5)", "'12'"),
    },
    "mariadb": {
        "ti": ("TINYINT", "-128"),
        "mi": ("MEDIUMINT UNSIGNED", "16777215"),
        "bi": ("BIGINT UNSIGNED", "18446744073709551615"),
        "de": ("DECIMAL(65, 30)", "12345678901234567890123456789012345.123456789012345678901234567890"),
        "dz": ("DECIMAL(10, 0)", "42"),
        "f": ("FLOAT", "1.1"),
        "d": ("DOUBLE", "1.5e-12"),
        "pi": ("DOUBLE", "3.141592653589793"),
        "bt": ("BIT(10)", "b'1010101010'"),
        "y": ("YEAR", "2155"),
        "da": ("DATE", "'2026-11-29'"),
        "dt": ("DATETIME(6)", "'2026-11-29 12:00:00.123456'"),
        "ts": ("TIMESTAMP(6) NULL", "'2026-11-29 12:00:00.123456'"),
        "tm": ("TIME(6)", "'-838:59:59.000001'"),
        "c": ("CHAR(3)", "'ab'"),
        "vc": ("VARCHAR(20)", "'héllo ✓'"),
        "tx": ("LONGTEXT", "'line\\nnext'"),
        "bn": ("BINARY(4)", "x'01020304'"),
        "vb": ("VARBINARY(10)", "x'0001'"),
        "bl": ("BLOB", "x'00ff10'"),
        "en": ("ENUM('x', 'y')", "'y'"),
        "st": ("SET('a', 'b', 'c')", "'a,c'"),
        "js": ("JSON", """'{"a": 2.50,  "b": [1]}'"""),
        "uu": ("UUID", "'123e4567-e89b-12d3-a456-426614174000'"),
        "i4": ("INET4", "'10.0.0.1'"),
        "i6": ("INET6", "'::1'"),
        "pt": ("POINT NULL", "POINT(1.5, 2.25)"),
    },
    "postgresql": {
        "sm": ("smallint", "-32768"),
        "bg": ("bigint", "9223372036854775807"),
        "nu": ("numeric", "12345.000000000000000000001"),
        "n4": ("numeric(10, 4)", "1.5000"),
        "nn": ("numeric", "'NaN'"),
        "re": ("real", "1.1"),
        "dp": ("double precision", "1.5e-12"),
        "di": ("double precision", "'-Infinity'"),
        "mo": ("money", "12.34"),
        "bo": ("boolean", "true"),
        "ch": ("char(3)", "'ab'"),
        "tx": ("text", "'héllo ✓'"),
        "by": ("bytea", "'\\x00ff10'"),
        "da": ("date", "'2026-11-29'"),
        "tm": ("time", "'24:00:00'"),
        "tt": ("timetz", "'12:00:00+05:30'"),
        "ts": ("timestamp(6)", "'2026-11-29 12:00:00.123456'"),
        "tz": ("timestamptz", "'2026-11-29 12:00:00.123456+02'"),
        "iv": ("interval", "'1 mon 2 days 03:04:05.678'"),
        "uu": ("uuid", "'123e4567-e89b-12d3-a456-426614174000'"),
        "js": ("json", """'{"a": 2.50,  "b": [1]}'"""),
        "jb": ("jsonb", """'{"a": 2.50}'"""),
        "ia": ("integer[]", "'{1,2,NULL}'"),
        "ta": ("text[]", """'{"a,b",c}'"""),
        "ir": ("int4range", "'[1,10)'"),
        "tr": ("tstzrange", "'[2026-01-01,2026-02-01)'"),
        "ip": ("inet", "'10.0.0.1/8'"),
        "cd": ("cidr", "'10.0.0.0/8'"),
        "mc": ("macaddr", "'08:00:2b:01:02:03'"),
        "bi": ("bit(5)", "B'10101'"),
        "vb": ("varbit(10)", "B'101'"),
        "pt": ("point", "'(1.5,2.25)'"),
        "bx": ("box", "'((0,0),(1,1))'"),
        "xm": ("xml", "'<a>x</a>'"),
        "tv": ("tsvector", "'a fat cat'"),
        "en": ("mood", "'sad'"),
        "dm": ("posint", "5"),
        "oi": ("oid", "7"),
    },
}
PG_TYPES = "CREATE TYPE mood AS ENUM ('ok', 'sad'); CREATE DOMAIN posint AS integer CHECK (VALUE > 0)"


def quoted(backend: str, name: str) -> str:
    return f"`{name}`" if backend == "mariadb" else f'"{name}"'


def stored(engine: Engine, backend: str, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table`` as the database holds it: PostgreSQL's text of each value, MariaDB's and
    SQLite's values as their drivers give them (SQLite's with their storage class), ordered by id."""
    names = ["id", *TYPED_COLUMNS[backend]]
    if backend == "postgresql":
        columns = [f"CAST({quoted(backend, name)} AS TEXT)" for name in names]
    elif backend == "sqlite":
        columns = [f"{quoted(backend, name)}, typeof({quoted(backend, name)})" for name in names]
    else:
        columns = [quoted(backend, name) for name in names]
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(f"SELECT {', '.join(columns)} FROM {table} ORDER BY id"))]


@pytest.fixture
def typed(tasks: Tasks, backend: str) -> Tasks:
    """The task table with a column of each type, one old success row of edge values and one of nulls."""
    with tasks.engine.begin() as conn:
        if backend == "postgresql":
            conn.execute(text(PG_TYPES))
        for name, (kind, _) in TYPED_COLUMNS[backend].items():
            conn.execute(text(f"ALTER TABLE processing_tasks ADD COLUMN {quoted(backend, name)} {kind}"))
    edges = tasks.add("success", finished_at=ago(days=40))
    tasks.add("success", finished_at=ago(days=41))
    assignments = ", ".join(f"{quoted(backend, name)} = {value}" for name, (_, value) in TYPED_COLUMNS[backend].items())
    with tasks.engine.begin() as conn:
        conn.execute(text(f"UPDATE processing_tasks SET {assignments} WHERE id = {int(edges)}"))
    tasks.add("success", finished_at=ago(days=1))  # kept
    return tasks


def reflected(tasks: Tasks, database_url: str) -> TaskTable:
    return open_table(tasks.engine, settings_for(database_url, tasks.shape))


def purge(tasks: Tasks, database_url: str, archive: Any) -> RunResult:
    """Delete the old successes (both typed rows), archiving them."""
    settings = settings_for(database_url, tasks.shape)
    policies = standard_policies(settings)[3:]
    return run_policies(reflected(tasks, database_url), policies, NOW, RunOptions(batch_size=10, archive=archive))


def test_every_column_type_comes_back_exactly_from_a_jsonl_archive(
    typed: Tasks, backend: str, database_url: str, tmp_path: Path
) -> None:
    before = stored(typed.engine, backend, "processing_tasks")
    table = reflected(typed, database_url)
    archive = JsonlArchive(tmp_path, table.table, NOW, id_column="id")
    assert purge(typed, database_url, archive).affected == 2 and typed.count() == 1
    result = restore_archive(table, archive.path, dry_run=False, batch_size=1000)
    assert (result.read, result.restored, result.already_present) == (2, 2, 0)
    assert stored(typed.engine, backend, "processing_tasks") == before


def test_every_column_type_is_kept_exactly_by_the_table_archive(
    typed: Tasks, backend: str, database_url: str
) -> None:
    before = stored(typed.engine, backend, "processing_tasks")[:2]
    archive = TableArchive(typed.engine, reflected(typed, database_url).table, "processing_tasks_archive", NOW)
    assert purge(typed, database_url, archive).affected == 2
    assert stored(typed.engine, backend, "processing_tasks_archive") == before


def test_json_documents_and_floats_are_archived_as_the_database_wrote_them(
    typed: Tasks, backend: str, database_url: str, tmp_path: Path
) -> None:
    archive = JsonlArchive(tmp_path, reflected(typed, database_url).table, NOW, id_column="id")
    purge(typed, database_url, archive)
    edges = next(row for row in read_jsonl_archive(archive.path) if row["js"] is not None)
    assert edges["js"] == '{"a": 2.50,  "b": [1]}'
    float_column = {"sqlite": "r", "mariadb": "d", "postgresql": "dp"}[backend]
    assert edges[float_column] == 1.5e-12


def test_an_archive_written_by_an_earlier_reaper_still_decodes() -> None:
    # Earlier archives held MariaDB's DOUBLE as a decimal string, and JSON documents as objects.
    assert from_json("3.1415926536", exact_type(mysql.DOUBLE(asdecimal=True), "mariadb")) == 3.1415926536
    assert json.loads(from_json({"a": 2.5}, exact_type(postgresql.JSONB(), "postgresql"))) == {"a": 2.5}
    assert from_json("AP8Q", exact_type(LargeBinary(), "sqlite")) == b"\x00\xff\x10"


@pytest.mark.parametrize(
    "value, column_type, dialect",
    [
        (True, Integer(), "postgresql"),
        ("yesterday", DateTime(), "mariadb"),
        ("not base64!", LargeBinary(), "postgresql"),
        ("12 apples", Numeric(), "postgresql"),
        ("not-a-uuid", Uuid(), "postgresql"),
        (1.5, String(), "mariadb"),
    ],
)
def test_a_json_value_that_cannot_be_its_columns_is_refused(value: Any, column_type: Any, dialect: str) -> None:
    with pytest.raises((ValueError, ArithmeticError)):
        from_json(value, exact_type(column_type, dialect))


def test_floats_json_cannot_spell_are_kept_as_text() -> None:
    exact = exact_type(Float(), "postgresql")
    assert [to_json(value, exact) for value in (math.inf, -math.inf)] == ["Infinity", "-Infinity"]
    assert math.isnan(from_json(to_json(math.nan, exact), exact))
