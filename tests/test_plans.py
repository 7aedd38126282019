"""Plans: each policy reads along an index that serves it or walks the primary key, never sorting its
matches, and a dry run counts in the database with a number of statements that does not grow."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from test_indexes import _walk, analyze, explain, fill_like_production

from helpers import BACKENDS, NOW, Shape, Tasks, add_age_indexes, ago, create_table, settings_for
from reaper.cli.command import main
from reaper.database.table import open_table
from reaper.engine.counting import counted_plans
from reaper.engine.plans import RuleCount, plan_policies
from reaper.engine.reap import RunOptions, run_policies
from reaper.engine.sizing import MAX_BATCH_SIZE
from reaper.policy.policies import standard_policies


def plans_of(tasks: Tasks, database_url: str) -> dict[str, str]:
    settings = settings_for(database_url, tasks.shape)
    table = open_table(tasks.engine, settings)
    plans = plan_policies(table, standard_policies(settings))
    return {name: next(iter(by_rule.values())).describe() for name, by_rule in plans.items()}


def test_a_policy_that_no_index_serves_walks_the_primary_key_and_says_what_index_it_lacks(
    tasks: Tasks, database_url: str, backend: str
) -> None:
    plans = plans_of(tasks, database_url)
    key = "" if backend in ("sqlite", "mariadb") else ", id"  # there the database appends the key itself
    assert plans["success_retention"] == f"primary-key walk (no index on (status, completed_at{key}))"
    assert all(plan.startswith("primary-key walk") for plan in plans.values())


def test_the_applications_own_status_and_created_at_index_serves_pending_where_the_key_is_appended(
    tasks: Tasks, database_url: str, backend: str
) -> None:
    with tasks.engine.begin() as conn:
        conn.exec_driver_sql("CREATE INDEX ix_app ON processing_tasks (status, created_at)")
    plans = plans_of(tasks, database_url)
    if backend == "postgresql":  # an index ends where it says: the order by id within a moment needs a sort
        assert plans["pending_timeout"] == "primary-key walk (no index on (status, created_at, id))"
    else:
        assert plans["pending_timeout"] == "index ix_app (status, created_at)"
    assert plans["running_timeout"].startswith("primary-key walk")


def test_the_recommended_indexes_serve_every_policy(tasks: Tasks, database_url: str) -> None:
    add_age_indexes(tasks)
    plans = plans_of(tasks, database_url)
    assert plans["running_timeout"] == "index ix_processing_tasks_started_at (status, started_at, id)"
    assert all(plan.startswith("index ") for plan in plans.values())


@freeze_time(NOW)
def test_check_indexes_says_each_plan_and_what_the_missing_index_would_save(
    tasks: Tasks, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):
        tasks.add("success", finished_at=ago(days=40))
    tasks.add("success", finished_at=ago(days=1))
    assert main(["--check-indexes", "--database-url", database_url]) == 5  # indexes missing
    out = capsys.readouterr().out
    assert "How each policy reads its matches now:" in out
    assert "success_retention      primary-key walk (no index on (status, completed_at" in out
    assert "reads all 4 rows to find 3; the index would read about 3" in out
    assert main(["--check-indexes", "--json", "--database-url", database_url]) == 5
    plans = {item["policy"]: item for item in json.loads(capsys.readouterr().out)["plans"]}
    assert plans["success_retention"]["plan"] == "primary-key walk" and plans["success_retention"]["index"] is None
    assert (plans["success_retention"]["matched"], plans["success_retention"]["rows_read"]) == (3, 4)


# --- no statement sorts the matches --------------------------------------------------------------------


def recorded(engine: Engine) -> list[tuple[str, Any]]:
    """Record every single statement (with its parameters) the engine runs from now on."""
    seen: list[tuple[str, Any]] = []

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if not many:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", before)
    return seen


def on_the_table(statements: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    keep = ("SELECT", "UPDATE", "DELETE")
    return [(s, p) for s, p in statements if s.lstrip().upper().startswith(keep) and "processing_tasks" in s]


@pytest.mark.parametrize("application_index", [False, True], ids=["primary key only", "status, created_at"])
def test_no_statement_of_a_run_sorts_the_matches_and_a_range_never_reads_the_whole_table(
    tasks: Tasks, database_url: str, backend: str, application_index: bool
) -> None:
    fill_like_production(tasks)
    with tasks.engine.begin() as conn:
        if application_index:
            conn.exec_driver_sql("CREATE INDEX ix_app ON processing_tasks (status, created_at)")
        analyze(conn, "mysql" if backend == "mariadb" else backend, "processing_tasks")
    settings = settings_for(database_url, tasks.shape)
    table = open_table(tasks.engine, settings)
    seen = recorded(tasks.engine)
    run = run_policies(table, standard_policies(settings), NOW, RunOptions(batch_size=500))
    assert run.affected > 7000  # the demo's shape: thousands of expired rows, a few zombies
    statements = on_the_table(seen)
    with tasks.engine.connect() as conn:
        for statement, parameters in statements:
            plan = explain(conn, statement, parameters)
            assert not plan.sorts, statement
            batch = re.search(r"processing_tasks\.id (>=|<|>|<=|IN)", statement)  # a range of ids, or a batch's
            assert not (plan.scans and batch), f"a batch statement reads the whole table: {statement}"


@pytest.mark.parametrize("backend", [name for name in BACKENDS if name == "postgresql"], indirect=True)
def test_on_postgresql_each_stretch_of_a_walk_by_pages_reads_its_pages_alone(
    tasks: Tasks, database_url: str, backend: str
) -> None:
    fill_like_production(tasks)
    with tasks.engine.begin() as conn:
        analyze(conn, backend, "processing_tasks")
    settings = settings_for(database_url, tasks.shape)
    seen = recorded(tasks.engine)
    options = RunOptions(batch_size=500, max_batch_size=MAX_BATCH_SIZE)  # batches may grow: the walk goes by pages
    run = run_policies(open_table(tasks.engine, settings), standard_policies(settings), NOW, options)
    assert run.affected > 7000
    stretches = [(s, p) for s, p in seen if "ctid >=" in s]
    assert len(stretches) > 10  # 500 rows a stretch
    with tasks.engine.connect() as conn:
        for statement, parameters in stretches:
            document = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar_one()
            scans = [node["Node Type"] for node in _walk(document) if "Scan" in node.get("Node Type", "")]
            # the WITH clause's sample sorts the stretch's own deleted ids, no more: the table is read by TID range
            assert "Tid Range Scan" in scans and not {"Seq Scan", "Index Scan"} & set(scans), statement


def test_on_sqlite_a_batch_written_by_ids_looks_each_id_up(tmp_path: Path) -> None:
    """A batch read along an index holds ids in age order, spread over the table: bounded by its
    smallest and largest id, SQLite read the whole rowid range between them for every batch."""
    engine = create_engine(f"sqlite:///{tmp_path / 'tasks.sqlite3'}")
    tasks = Tasks(engine, create_table(engine, Shape()), Shape())
    add_age_indexes(tasks)
    for number in range(60):  # ids and ages in different orders
        tasks.add("running", started_at=ago(hours=30 + (number * 37) % 60))
    settings = settings_for(str(engine.url), tasks.shape)
    seen = recorded(engine)
    run = run_policies(open_table(engine, settings), standard_policies(settings)[:1], NOW, RunOptions(batch_size=10))
    assert run.policies["running_timeout"].affected == 60
    updates = [(s, p) for s, p in on_the_table(seen) if s.lstrip().upper().startswith("UPDATE")]
    with engine.connect() as conn:
        for statement, parameters in updates:
            plan = [str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
            assert plan == ["SEARCH processing_tasks USING INTEGER PRIMARY KEY (rowid=?)"], statement
    assert len(updates) == 6
    engine.dispose()


@pytest.mark.parametrize("backend", [name for name in BACKENDS if name == "postgresql"], indirect=True)
@pytest.mark.parametrize("indexed", [True], ids=["indexed"], indirect=True)
def test_on_postgresql_a_batch_written_by_ids_binds_them_as_one_array(
    tasks: Tasks, database_url: str, indexed: bool
) -> None:
    """Bound one by one, a batch of thousands of ids cost more to render and send than to write."""
    zombies = [tasks.add("running", started_at=ago(hours=30 + number % 7)) for number in range(40)]
    settings = settings_for(database_url, tasks.shape)
    seen = recorded(tasks.engine)
    table = open_table(tasks.engine, settings)
    run = run_policies(table, standard_policies(settings)[:1], NOW, RunOptions(batch_size=20))
    assert run.policies["running_timeout"].affected == 40 and {tasks.status_of(z) for z in zombies} == {"failure"}
    updates = [p for s, p in on_the_table(seen) if s.lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 2
    arrays = [value for p in updates for value in p.values() if isinstance(value, list)]
    assert [len(ids) for ids in arrays] == [20, 20] and sorted(arrays[0] + arrays[1]) == zombies
    assert all(len(p) < 20 for p in updates)  # the reason, the moments, the condition's values: not an id each


# --- a dry run counts in the database ---------------------------------------------------------------------


def statements_of_a_dry_run(tasks: Tasks, database_url: str) -> list[str]:
    settings = settings_for(database_url, tasks.shape)
    seen = recorded(tasks.engine)
    run_policies(open_table(tasks.engine, settings), standard_policies(settings), NOW, RunOptions(dry_run=True))
    return [statement for statement, _ in on_the_table(seen)]  # the catalog's reflection queries aside


@pytest.mark.parametrize("indexed", [False, True], ids=["primary key", "indexed"], indirect=True)
def test_a_dry_run_issues_as_many_statements_for_ten_times_the_matches(
    tasks: Tasks, database_url: str, indexed: bool
) -> None:
    def add(count: int) -> None:
        for _ in range(count):
            tasks.add("success", finished_at=ago(days=40))
            tasks.add("running", started_at=ago(hours=30))

    add(3)
    few = statements_of_a_dry_run(tasks, database_url)
    add(27)
    many = statements_of_a_dry_run(tasks, database_url)
    assert len(few) == len(many)


@pytest.mark.parametrize("indexed", [False], ids=["primary key"], indirect=True)
def test_a_dry_run_on_a_table_with_only_its_primary_key_counts_every_rule_in_one_pass_then_reads_only_what_matched(
    tasks: Tasks, database_url: str, indexed: bool
) -> None:
    tasks.add("success", finished_at=ago(days=40))
    tasks.add("running", started_at=ago(hours=30))
    tasks.add("failure", finished_at=ago(days=1))  # the spelling a write would use, found at once
    settings = settings_for(database_url, tasks.shape)
    seen = recorded(tasks.engine)
    run_policies(open_table(tasks.engine, settings), standard_policies(settings), NOW, RunOptions(dry_run=True))
    with tasks.engine.connect() as conn:
        scans = [s for s, p in on_the_table(seen) if explain(conn, s, p).scans]
    whole = [statement for statement in scans if "LIMIT" not in statement.upper()]
    # one count for the rules of all four policies, the only read of the whole table ...
    assert len(whole) == 1, "\n\n".join(whole)
    # ... then, for each of the two that match, reads that stop at their first rows: its first id, its last
    # id and its sample; nothing for the two that match nothing
    assert len(scans) - len(whole) <= 2 * 3, "\n\n".join(scans)


@pytest.mark.parametrize("indexed", [False], ids=["primary key"], indirect=True)
def test_a_dry_run_without_an_index_reports_the_first_and_last_id_that_match_not_the_tables(
    tasks: Tasks, database_url: str, indexed: bool
) -> None:
    tasks.add("success", finished_at=ago(days=1))
    old = [tasks.add("success", finished_at=ago(days=40)) for _ in range(2)]
    tasks.add("success", finished_at=ago(days=2))
    old.append(tasks.add("success", finished_at=ago(days=35)))
    tasks.add("success", finished_at=ago(days=1))
    settings = settings_for(database_url, tasks.shape)
    policies = [policy for policy in standard_policies(settings) if policy.name == "success_retention"]
    dry = run_policies(open_table(tasks.engine, settings), policies, NOW, RunOptions(dry_run=True))
    result = dry.policies["success_retention"]
    assert (result.matched, result.first_id, result.last_id) == (3, old[0], old[-1])


def test_a_dry_run_reports_what_the_real_run_then_does_with_a_bounded_requeue(
    make_tasks: Any, database_url: str
) -> None:
    tasks = make_tasks(Shape(columns={**Shape().columns, "attempts": "attempts"}))
    spent = [tasks.add("running", started_at=ago(hours=30), attempts=3) for _ in range(2)]
    fresh = [tasks.add("running", started_at=ago(hours=30), attempts=1) for _ in range(3)]
    settings = settings_for(
        database_url, tasks.shape, running_timeout_action="requeue", max_attempts=3
    )
    table = open_table(tasks.engine, settings)
    policies = standard_policies(settings)[:1]
    dry = run_policies(table, policies, NOW, RunOptions(dry_run=True)).policies["running_timeout"]
    real = run_policies(table, policies, NOW, RunOptions()).policies["running_timeout"]
    assert dry.done == real.done == {"requeued": 3, "failed": 2}
    assert dry.sample_ids == real.sample_ids == sorted([*spent, *fresh])
    assert (dry.first_id, dry.last_id) == (min(spent + fresh), max(spent + fresh))


# --- the walk along the primary key -----------------------------------------------------------------------


def ten_on_each_side_of_a_gap(tasks: Tasks, status: str, dated_by: str, moment: datetime) -> None:
    """Insert 20 tasks of ``status``, dated ``moment`` by column ``dated_by``: ids 1-10 and 5,000,000-5,000,009."""
    with tasks.engine.begin() as conn:
        for task_id in [*range(1, 11), *range(5_000_000, 5_000_010)]:
            conn.execute(
                text(
                    f"INSERT INTO processing_tasks (id, status, created_at, {dated_by}) "
                    "VALUES (:id, :status, :t, :t)"
                ),
                {"id": task_id, "status": status, "t": moment.replace(tzinfo=None)},
            )


def test_a_walk_along_integer_ids_skips_a_gap_with_one_look_up(tasks: Tasks, database_url: str) -> None:
    ten_on_each_side_of_a_gap(tasks, "running", "started_at", ago(hours=30))
    settings = settings_for(database_url, tasks.shape)
    seen = recorded(tasks.engine)
    table = open_table(tasks.engine, settings)
    run = run_policies(table, standard_policies(settings)[:1], NOW, RunOptions(batch_size=5))
    assert run.policies["running_timeout"].affected == 20
    assert len(on_the_table(seen)) < 30  # not a million ids / 5 per range


def test_a_purge_without_an_index_deletes_range_by_range_of_the_primary_key(
    tasks: Tasks, database_url: str
) -> None:
    old = [tasks.add("success", finished_at=ago(days=40)) for _ in range(12)]
    young = tasks.add("success", finished_at=ago(days=1))
    seen = recorded(tasks.engine)
    settings = settings_for(database_url, tasks.shape)
    table = open_table(tasks.engine, settings)
    run = run_policies(table, standard_policies(settings)[3:], NOW, RunOptions(batch_size=5))
    statements = [" ".join(s.split()).upper() for s, _ in on_the_table(seen)]
    deletes = [s for s in statements if s.startswith("DELETE")]
    # stretches of 5 ids: 5, 5 and the 2 old rows beside the young one, each with the rule's condition
    assert len(deletes) == 3 and all("ID >=" in d and "ID IN (" not in d and "ORDER BY" not in d for d in deletes)
    result = run.policies["success_retention"]
    assert (result.affected, result.batches, tasks.count()) == (12, 3, 1) and tasks.get(young)
    assert result.sample_ids == old[:5]
    assert result.first_id == old[0] and old[-1] <= result.last_id < young + 5  # the last stretch's end


def test_a_purge_without_an_index_skips_a_gap_in_the_ids_with_one_look_up(tasks: Tasks, database_url: str) -> None:
    ten_on_each_side_of_a_gap(tasks, "success", "completed_at", ago(days=40))
    settings = settings_for(database_url, tasks.shape)
    seen = recorded(tasks.engine)
    table = open_table(tasks.engine, settings)
    run = run_policies(table, standard_policies(settings)[3:], NOW, RunOptions(batch_size=5))
    assert (run.policies["success_retention"].affected, tasks.count()) == (20, 0)
    assert len(on_the_table(seen)) < 30  # not a million ids / 5 per range


@pytest.mark.parametrize("indexed", [False], ids=["primary key"], indirect=True)
def test_a_run_without_indexes_walks_the_primary_key_only_for_the_policies_that_match(
    tasks: Tasks, database_url: str, indexed: bool
) -> None:
    for _ in range(40):
        tasks.add("success", finished_at=ago(days=1))
    zombies = [tasks.add("running", started_at=ago(hours=30)) for _ in range(3)]
    for _ in range(40):
        tasks.add("success", finished_at=ago(days=1))
    settings = settings_for(database_url, tasks.shape)
    seen = recorded(tasks.engine)
    run = run_policies(open_table(tasks.engine, settings), standard_policies(settings), NOW, RunOptions(batch_size=5))
    assert run.policies["running_timeout"].affected == 3 and [tasks.status_of(z) for z in zombies] == ["failure"] * 3
    assert run.matched == 3  # pending, failure and success found nothing
    ranges = [statement for statement, _ in on_the_table(seen) if "processing_tasks.id <" in statement]
    # running_timeout's walk of 83 ids, 5 at a time: 17 ranges, each read for the sample of ids (it
    # never fills: 3 zombies), one of them failed; the other three policies' walks would read 51 more
    assert 0 < len(ranges) <= 18, ranges


@pytest.mark.parametrize("indexed", [False], ids=["primary key"], indirect=True)
def test_a_run_that_fails_zombies_without_an_index_reads_the_whole_table_once_though_no_row_is_failed_yet(
    tasks: Tasks, database_url: str, indexed: bool
) -> None:
    for _ in range(20):
        tasks.add("SUCCESS", finished_at=ago(days=1))
    zombie = tasks.add("RUNNING", started_at=ago(hours=30))
    settings = settings_for(database_url, tasks.shape)
    seen = recorded(tasks.engine)
    run_policies(open_table(tasks.engine, settings), standard_policies(settings), NOW, RunOptions(batch_size=5))
    assert tasks.status_of(zombie) == "FAILURE"  # the table's casing, though no row held a failure before
    with tasks.engine.connect() as conn:
        scans = [s for s, p in on_the_table(seen) if "processing_tasks.id <" not in s and explain(conn, s, p).scans]
    whole = [statement for statement in scans if "LIMIT" not in statement.upper()]
    # the opening count, which also finds how rows spell the status a fail writes: looking that up apart
    # reads the whole table when no row has it ...
    assert len(whole) == 1, "\n\n".join(whole)
    # ... and, as none does, the casing of a status some row holds: a read that stops at its first row
    assert len(scans) - len(whole) <= 1, "\n\n".join(scans)


@pytest.mark.parametrize("indexed", [False], ids=["primary key"], indirect=True)
def test_where_an_index_leads_with_the_status_the_opening_count_leaves_out_the_statuses_no_row_holds(
    tasks: Tasks, database_url: str, indexed: bool
) -> None:
    with tasks.engine.begin() as conn:
        conn.exec_driver_sql("CREATE INDEX ix_app ON processing_tasks (status, created_at)")
    for _ in range(3):
        tasks.add("success", finished_at=ago(days=40))
    tasks.add("success", finished_at=ago(days=1))
    settings = settings_for(database_url, tasks.shape)
    seen = recorded(tasks.engine)
    dry = run_policies(open_table(tasks.engine, settings), standard_policies(settings), NOW, RunOptions(dry_run=True))
    matched = {name: result.matched for name, result in dry.policies.items()}
    assert matched == {"running_timeout": 0, "pending_timeout": 0, "failure_retention": 0, "success_retention": 3}
    passes = [statement for statement, _ in on_the_table(seen) if rule_counts(statement)]
    # each rule counted adds to the pass's time: only success_retention's status is held by a row
    assert len(passes) == 1 and rule_counts(passes[0]) == 1, passes


def rule_counts(statement: str) -> int:
    """How many rules a pass counts: a conditional count each (a FILTER where the database takes one)."""
    return statement.count("count(CASE WHEN") + statement.count("count(*) FILTER (WHERE")


@pytest.mark.parametrize("by_status", [True, False], ids=["grouped by status", "rule by rule"])
def test_the_opening_count_finds_each_rules_matches_spent_attempts_and_the_spellings_to_write(
    make_tasks: Any, database_url: str, monkeypatch: pytest.MonkeyPatch, by_status: bool
) -> None:
    tasks = make_tasks(Shape(columns={**Shape().columns, "attempts": "attempts"}))
    for status, attempts in [("running", 3), ("Running", 3), ("running", 1), ("RUNNING", 1), ("running", 1)]:
        tasks.add(status, started_at=ago(hours=30), attempts=attempts)
    tasks.add("running", started_at=ago(hours=1), attempts=3)
    for status, age in [("PENDING", ago(hours=3)), ("PENDING", ago(hours=3)), ("PENDING", ago(minutes=5))]:
        tasks.add(status, created_at=age)
    for status, age in [("FAILURE", ago(days=8)), ("FAILURE", ago(days=9)), ("FAILURE", ago(days=1))]:
        tasks.add(status, finished_at=age)
    for status, age in [("success", 40), ("success", 35), ("SUCCESS", 31), ("success", 1), ("Success", 2)]:
        tasks.add(status, finished_at=ago(days=age))
    tasks.add("cancelled", finished_at=ago(days=60))
    settings = settings_for(database_url, tasks.shape, running_timeout_action="requeue", max_attempts=3)
    table = open_table(tasks.engine, settings)
    monkeypatch.setattr(type(table.dialect), "counts_by_status", by_status)
    plans = counted_plans(table, standard_policies(settings), NOW, written=["failure", "pending"])
    found = {name: [plan.found for plan in by_rule.values()] for name, by_rule in plans.items()}
    assert found == {
        "running_timeout": [RuleCount(5, 2)],
        "pending_timeout": [RuleCount(2)],
        "failure_retention": [RuleCount(2)],
        "success_retention": [RuleCount(3)],
    }
    with tasks.engine.connect() as conn:  # as rows spell them, found by the count: no look-up
        assert (table.write_value(conn, "failure"), table.write_value(conn, "pending")) == ("FAILURE", "PENDING")


def test_a_run_plans_from_the_indexes_it_is_given_and_reads_them_again_when_given_none(
    tasks: Tasks, database_url: str
) -> None:
    # A one-shot run plans from the indexes read as it opened the table; a daemon's pass reads them again,
    # so that an index created while it runs serves from its next pass.
    tasks.add("success", finished_at=ago(days=40))
    settings = settings_for(database_url, tasks.shape)
    table = open_table(tasks.engine, settings)
    add_age_indexes(tasks)
    retention = standard_policies(settings)[3:]
    as_opened = counted_plans(table, retention, NOW, indexes=table.indexes)["success_retention"]
    read_again = counted_plans(table, retention, NOW)["success_retention"]
    assert [plan.index for plan in as_opened.values()] == [None]
    assert [plan.index.name for plan in read_again.values() if plan.index] == ["ix_processing_tasks_finished_at"]
    reopened = open_table(tasks.engine, settings)
    assert "ix_processing_tasks_finished_at" in {index.name for index in reopened.indexes}
