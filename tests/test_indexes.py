"""Recommended indexes: the report, the statements, and the database's own EXPLAIN of each batch."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Select, and_, func, insert, select
from sqlalchemy.engine import Connection

from helpers import NOW, SERVER_BACKENDS, Tasks, settings_for
from reaper.cli.command import main
from reaper.database.demo import demo_rows
from reaper.database.table import TaskTable, open_table
from reaper.engine.rows import position_shape
from reaper.engine.selection import Segment, segment_query, segments
from reaper.inspect.indexes import check_indexes
from reaper.policy.matching import rule_condition
from reaper.policy.policies import Policy, standard_policies

BATCH = 1000
DEMO_COLUMNS = ("task_type", "status", "created_at", "started_at", "completed_at", "updated_at", "error_message")


def fill_like_production(tasks: Tasks) -> None:
    """15,420 rows shaped like the demo's statistics: mostly successes, a few zombies."""
    rows = [{key: row[key] for key in DEMO_COLUMNS} for row in demo_rows(NOW.replace(tzinfo=None))]
    with tasks.engine.begin() as conn:
        conn.execute(insert(tasks.table), rows)


def analyze(conn: Connection, backend: str, table: str) -> None:
    statement = {"mysql": f"ANALYZE TABLE {table}", "postgresql": f"ANALYZE {table}", "sqlite": "ANALYZE"}[backend]
    conn.exec_driver_sql(statement).close()


def rows_read(conn: Connection, query: Select[Any]) -> tuple[int, int]:
    """Run a batch SELECT under the database's EXPLAIN ANALYZE: (rows read, rows returned)."""
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    if conn.dialect.name in ("mysql", "mariadb"):
        document = conn.exec_driver_sql("ANALYZE FORMAT=JSON " + str(compiled), compiled.params).scalar_one()
        nodes = list(_walk(json.loads(document)))
        read = sum(float(node["r_rows"]) * float(node.get("r_loops", 1)) for node in nodes if "r_rows" in node)
    else:
        document = conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + str(compiled), compiled.params).scalar_one()
        nodes = list(_walk(document))
        read = sum(
            node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
            for node in nodes
            if "Scan" in node.get("Node Type", "") and "Bitmap Index" not in node.get("Node Type", "")
        )
    return int(read), len(conn.execute(query).all())


def index_range(conn: Connection, table: TaskTable, policy: Policy, segment: Segment) -> int:
    """How many index entries the segment's range holds: all rows of its status, or of its null range."""
    # The segment's condition starts with ``status = :value``; its bound value is what the range reads.
    status_value = segment.where.clauses[0].right.value  # type: ignore[attr-defined]  # see above
    condition = table.status == status_value
    if segment.order == (table.id,):  # the "first age column is null" segment
        condition = and_(condition, table.age_columns(policy.status)[0].is_(None))
    return int(conn.execute(select(func.count()).select_from(table.table).where(condition)).scalar_one())


def batch_reads(conn: Connection, table: TaskTable, policy: Policy) -> list[tuple[str, int, int, int]]:
    """For each segment of ``policy``, first batch and a later one: (where, rows read, returned, range size)."""
    measured = []
    for number, segment in enumerate(segments(table, policy, NOW, table.stored_spellings(conn, policy.status))):
        shape = position_shape(table, segment.order)
        first = shape.rows(conn.execute(segment_query(table, policy, segment, None, BATCH)))
        positions: list[Any] = [None] + ([first[len(first) // 2].position] if first else [])
        for after in positions:
            read, returned = rows_read(conn, segment_query(table, policy, segment, after, BATCH))
            kind = "null range" if segment.order == (table.id,) else "age range"
            where = f"{policy.name} segment {number} ({kind}) after {after}"
            measured.append((where, read, returned, index_range(conn, table, policy, segment)))
    return measured


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def test_check_indexes_reports_what_is_missing_with_statements_that_work(tasks: Tasks, database_url: str) -> None:
    table = open_table(tasks.engine, settings_for(database_url))
    advice = check_indexes(table)
    assert [item.columns for item in advice] == [
        ("status", "started_at", "id"),
        ("status", "created_at", "id"),
        ("status", "completed_at", "id"),
        ("created_at",),
    ]
    assert not any(item.present for item in advice)
    with tasks.engine.begin() as conn:
        for item in advice:
            conn.exec_driver_sql(item.create_statement.rstrip(";"))
    assert all(item.present for item in check_indexes(open_table(tasks.engine, settings_for(database_url))))


def test_a_longer_existing_index_counts_as_present(tasks: Tasks, database_url: str) -> None:
    with tasks.engine.begin() as conn:
        conn.exec_driver_sql("CREATE INDEX ix_wide ON processing_tasks (status, created_at, id, task_type)")
    advice = {
        item.columns: item.present for item in check_indexes(open_table(tasks.engine, settings_for(database_url)))
    }
    assert advice[("status", "created_at", "id")] and not advice[("status", "started_at", "id")]


def test_an_index_without_the_key_counts_where_the_database_appends_the_key_itself(
    tasks: Tasks, database_url: str, backend: str
) -> None:
    # InnoDB appends the primary key to every secondary index, SQLite the rowid (an INTEGER PRIMARY KEY).
    with tasks.engine.begin() as conn:
        conn.exec_driver_sql("CREATE INDEX ix_short ON processing_tasks (status, completed_at)")
    table = open_table(tasks.engine, settings_for(database_url))
    advice = {item.columns: item.present for item in check_indexes(table)}
    assert advice[("status", "completed_at", "id")] == (backend in ("mariadb", "sqlite"))
    if backend == "sqlite":  # and the database reads the policy's order from it, with no sort
        with tasks.engine.connect() as conn:
            plan = conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT id FROM processing_tasks WHERE status = 'success' "
                "AND completed_at < '2026-01-01' ORDER BY completed_at, id LIMIT 10"
            ).all()
        assert "ix_short" in str(plan) and "TEMP B-TREE" not in str(plan)


def test_check_indexes_cli_prints_the_create_statements_and_exits_5_while_one_is_missing(
    tasks: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tasks.dump()
    assert main(["--check-indexes", "--database-url", database_url]) == 5
    out = capsys.readouterr().out
    assert "MISSING" in out and "CREATE INDEX ix_processing_tasks_status_completed_at_id" in out
    assert main(["--check-indexes", "--json", "--database-url", database_url]) == 5
    document = json.loads(capsys.readouterr().out)
    assert len(document["indexes"]) == 4 and tasks.dump() == before


def test_check_indexes_exits_0_once_every_recommended_index_is_there(
    tasks: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    create_recommended_indexes(tasks, database_url)
    assert main(["--check-indexes", "--database-url", database_url]) == 0
    assert "MISSING" not in capsys.readouterr().out
    assert main(["--check-indexes", "--json", "--database-url", database_url]) == 0
    assert all(item["present"] for item in json.loads(capsys.readouterr().out)["indexes"])


def create_recommended_indexes(tasks: Tasks, database_url: str) -> None:
    with tasks.engine.begin() as conn:
        for item in check_indexes(open_table(tasks.engine, settings_for(database_url))):
            conn.exec_driver_sql(item.create_statement.rstrip(";"))


@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)
def test_without_the_indexes_a_plain_query_for_zombies_reads_the_whole_table(tasks: Tasks, database_url: str) -> None:
    fill_like_production(tasks)
    settings = settings_for(database_url)
    table = open_table(tasks.engine, settings)
    with tasks.engine.connect() as conn:
        analyze(conn, table.engine.url.get_backend_name(), table.name)
        pending = standard_policies(settings)[1]
        plain_query = (
            select(table.id)
            .where(rule_condition(table, pending, pending.default, NOW))
            .order_by(table.id)
            .limit(BATCH)
        )
        read, returned = rows_read(conn, plain_query)
    assert returned == 5 and read >= 15000


@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)
def test_with_the_recommended_indexes_no_batch_reads_much_more_than_it_returns(
    tasks: Tasks, database_url: str
) -> None:
    fill_like_production(tasks)
    create_recommended_indexes(tasks, database_url)
    settings = settings_for(database_url)
    table = open_table(tasks.engine, settings)
    with tasks.engine.connect() as conn:
        analyze(conn, table.engine.url.get_backend_name(), table.name)
        measured = [reads for policy in standard_policies(settings) for reads in batch_reads(conn, table, policy)]
    assert any(returned == BATCH for _, _, returned, _ in measured)  # the purges fill whole batches
    for where, read, returned, range_size in measured:
        if "(age range)" in where:  # ordered by the age column: a batch reads what it returns
            assert read <= returned + 5, (where, read, returned)
        else:  # the null range of the first age column, walked once by id over a whole run
            assert read <= range_size < 15420 // 4, (where, read, returned, range_size)


@dataclass(frozen=True)
class Explained:
    """How the database says it runs a statement."""

    sorts: bool  # a sort of rows it read (filesort, a Sort node, a temporary b-tree)
    scans: bool  # a read of the whole task table
    indexes: set[str]  # the indexes it reads


def explain(conn: Connection, statement: str, parameters: Any) -> Explained:
    """Ask the database how it runs ``statement`` with ``parameters`` (as the DB-API driver takes them)."""
    backend = conn.dialect.name
    if backend == "sqlite":
        details = [str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
        indexes = {name for detail in details for name in re.findall(r"USING (?:COVERING )?INDEX (\w+)", detail)}
        sorts = any("TEMP B-TREE" in detail for detail in details)
        return Explained(sorts, any(detail == "SCAN processing_tasks" for detail in details), indexes)
    if backend in ("mysql", "mariadb"):
        document = conn.exec_driver_sql("EXPLAIN FORMAT=JSON " + statement, parameters).scalar_one()
        nodes = list(_walk(json.loads(document)))
        scans = any(node.get("access_type") == "ALL" for node in nodes)
        return Explained("filesort" in document, scans, {node["key"] for node in nodes if "key" in node})
    nodes = list(_walk(conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar_one()))
    types = [node.get("Node Type", "") for node in nodes]
    indexes = {node["Index Name"] for node in nodes if "Index Name" in node}
    return Explained(any("Sort" in kind for kind in types), "Seq Scan" in types, indexes)


def explain_query(conn: Connection, query: Select[Any]) -> Explained:
    """``explain`` for a query built with SQLAlchemy."""
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    parameters: Any = compiled.params
    if compiled.positiontup is not None:  # SQLite's driver takes positional parameters
        parameters = tuple(compiled.params[name] for name in compiled.positiontup)
    return explain(conn, str(compiled), parameters)


def test_the_null_range_of_an_age_column_is_read_along_its_index_without_a_sort(
    tasks: Tasks, database_url: str
) -> None:
    """Rows without completed_at are read by id from the null range of (status, completed_at, id). Ordered
    by id alone, PostgreSQL (which takes ``IS NULL`` for no equality) walked the primary key instead;
    MariaDB sorts the range when ordered by (completed_at, id)."""
    fill_like_production(tasks)
    create_recommended_indexes(tasks, database_url)
    settings = settings_for(database_url)
    table = open_table(tasks.engine, settings)
    policy = next(policy for policy in standard_policies(settings) if policy.name == "success_retention")
    with tasks.engine.connect() as conn:
        analyze(conn, table.engine.url.get_backend_name(), table.name)
        null_range = [seg for seg in segments(table, policy, NOW, ["success"]) if seg.order == (table.id,)]
        assert len(null_range) == 1
        shape = position_shape(table, null_range[0].order)
        first = shape.rows(conn.execute(segment_query(table, policy, null_range[0], None, 100)))
        assert len(first) == 100  # the range holds more: a later batch has rows to read and order
        plan = explain_query(conn, segment_query(table, policy, null_range[0], first[-1].position, 100))
    serving = {index.name for index in table.dialect.indexes(table.engine, table.table)
               if index.columns[:2] == ("status", "completed_at")}
    assert not plan.sorts and plan.indexes & serving, (plan, serving)


def test_with_requeue_pending_rows_are_read_along_updated_at_and_with_a_heartbeat_running_rows_along_it(
    tasks: Tasks, database_url: str
) -> None:
    columns = {**tasks.shape.column_settings(), "heartbeat_at": "updated_at"}
    settings = settings_for(database_url, tasks.shape, columns=columns, running_timeout_action="requeue")
    advice = [item.columns for item in check_indexes(open_table(tasks.engine, settings))]
    assert ("status", "updated_at", "id") in advice and ("status", "started_at", "id") not in advice
    assert ("status", "created_at", "id") not in advice
