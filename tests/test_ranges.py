"""Writing by range: one DELETE (or fail) per batch, bounded by the index or the ids, the condition re-checked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import MetaData, Table, create_engine, event, text
from sqlalchemy.engine import Engine
from test_indexes import analyze

from helpers import (
    NOW,
    Tasks,
    ago,
    change_just_before_the_write,
    only,
    referenced_by_outputs,
    row_locked,
    settings_for,
)
from reaper.database.dialects.postgresql import PostgreSQL
from reaper.database.table import open_table
from reaper.engine import spans
from reaper.engine.reap import RunOptions, run_policies
from reaper.engine.sizing import MAX_BATCH_SIZE
from reaper.policy.policies import standard_policies
from reaper.results import RunResult


@pytest.fixture
def indexed(request: pytest.FixtureRequest) -> bool:
    """Deleting by range is the plan of a rule an index serves: every table here has the indexes,
    unless a test asks for the primary key alone."""
    return bool(getattr(request, "param", True))

def statements_of(engine: Engine) -> list[str]:
    """Record every statement the engine runs from now on."""
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda conn, cursor, statement, *rest: seen.append(statement))
    return seen


def purge(tasks: Tasks, database_url: str, **options: Any) -> RunResult:
    settings = settings_for(database_url, tasks.shape)
    table = open_table(tasks.engine, settings)
    return run_policies(table, standard_policies(settings)[3:], NOW, RunOptions(**options))


def deletes_seen(seen: list[str]) -> list[str]:
    """The DELETE statements among ``seen``, also those inside a WITH clause, normalised."""
    normalised = [" ".join(s.split()).upper() for s in seen]
    return [s for s in normalised if s.startswith("DELETE") or (s.startswith("WITH") and "AS (DELETE FROM" in s)]


def test_sparse_matches_are_deleted_one_index_range_per_batch_without_an_id_list(
    tasks: Tasks, database_url: str, backend: str
) -> None:
    old = []
    for minute in range(25):  # one match in twelve ids: too sparse to walk the primary key (see dense_share)
        old.append(tasks.add("success", finished_at=ago(days=31, minutes=minute)))
        for _ in range(11):
            tasks.add("success", finished_at=ago(days=29))
    seen = statements_of(tasks.engine)
    result = purge(tasks, database_url, batch_size=10).policies["success_retention"]
    deletes = deletes_seen(seen)
    # Three ranges of the finished-time segment, and one (empty here) of the rows without that time.
    assert len(deletes) == 4 and all("RETURNING" in d and "ID IN (" not in d and "ID >=" not in d for d in deletes)
    # PostgreSQL sums up what each DELETE removed (count, id span, smallest ids): no id list read back
    summed_up = [d for d in deletes if d.startswith("WITH") and "FROM GONE ORDER BY GONE.ID LIMIT" in d]
    assert len(summed_up) == (4 if backend == "postgresql" else 0)
    assert (result.matched, result.affected, result.batches, result.done) == (25, 25, 3, {"deleted": 25})
    assert result.sample_ids == sorted(old)[:5]
    assert (result.first_id, result.last_id) == (min(old), max(old))
    assert tasks.count() == 275


def work_of_each_delete(engine: Engine) -> list[int]:
    """Record how many SQLite virtual-machine steps (in tens) each DELETE takes from now on."""
    steps, work = [0], []

    def count() -> int:
        steps[0] += 1
        return 0  # go on

    def before(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        conn.connection.dbapi_connection.set_progress_handler(count, 10)
        steps[0] = 0

    def after(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            work.append(steps[0])

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    return work


@pytest.mark.parametrize("backend", only("sqlite"), indirect=True)
def test_on_sqlite_each_delete_along_an_index_reads_its_own_range_not_every_later_match(
    tasks: Tasks, database_url: str
) -> None:
    for minute in range(300):  # one match in five ids: index ranges
        tasks.add("success", finished_at=ago(days=31, minutes=minute))
        for _ in range(4):
            tasks.add("success", finished_at=ago(days=1))
    work = work_of_each_delete(tasks.engine)
    result = purge(tasks, database_url, batch_size=20).policies["success_retention"]
    assert (result.matched, result.affected, result.batches) == (300, 300, 15)
    # Each range holds 20 matches. Bounded by the rule's own text bound (two days after its cut-off)
    # instead of its own end, the first DELETE read all 300 matches, and the last one its own 20.
    ranges_of_twenty = work[:15]
    assert max(ranges_of_twenty) < 1.5 * min(ranges_of_twenty), work
    assert tasks.count() == 1200


@pytest.mark.parametrize("backend", only("postgresql"), indirect=True)
def test_on_postgresql_matches_in_one_id_of_eight_are_deleted_along_the_primary_key(
    tasks: Tasks, database_url: str
) -> None:
    for minute in range(25):  # sparse for the other databases; dense to PostgreSQL, from a tenth
        tasks.add("success", finished_at=ago(days=31, minutes=minute))
        for _ in range(7):
            tasks.add("success", finished_at=ago(days=29))
    seen = statements_of(tasks.engine)
    result = purge(tasks, database_url, batch_size=10).policies["success_retention"]
    deletes = deletes_seen(seen)
    assert deletes and all("PROCESSING_TASKS.ID >=" in d and "RETURNING" not in d for d in deletes)
    assert (result.matched, result.affected, tasks.count()) == (25, 25, 175)


def test_dense_matches_are_deleted_along_the_primary_key_in_steps_of_the_batch_size(
    tasks: Tasks, database_url: str
) -> None:
    old = [tasks.add("success", finished_at=ago(days=31, minutes=minute)) for minute in range(25)]
    young = tasks.add("success", finished_at=ago(days=29))
    seen = statements_of(tasks.engine)
    result = purge(tasks, database_url, batch_size=10).policies["success_retention"]
    deletes = deletes_seen(seen)
    # Counted, not read back: RETURNING cost MariaDB a third of its rate (bench/batch_ceiling.py's notes).
    assert len(deletes) == 3 and all("RETURNING" not in d and "ID >=" in d and "ID IN (" not in d for d in deletes)
    assert (result.matched, result.affected, result.batches) == (25, 25, 3)
    assert (result.first_id, result.last_id) == (min(old), max(old))
    assert tasks.count() == 1 and tasks.get(young) is not None


@pytest.mark.parametrize("indexed", [False], ids=["primary key alone"], indirect=True)
def test_zombies_that_no_index_finds_are_failed_in_stretches_of_ids_without_an_id_list(
    tasks: Tasks, database_url: str
) -> None:
    zombies = [tasks.add("running", started_at=ago(hours=30 + minute / 60)) for minute in range(25)]
    young = tasks.add("running", started_at=ago(hours=1))
    settings = settings_for(database_url, tasks.shape)
    seen = statements_of(tasks.engine)
    running_timeout = standard_policies(settings)[:1]
    result = run_policies(open_table(tasks.engine, settings), running_timeout, NOW, RunOptions(batch_size=10)).policies[
        "running_timeout"
    ]
    updates = [" ".join(s.split()).upper() for s in seen if s.lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 3 and all("ID >=" in u and "ID IN (" not in u for u in updates)
    assert (result.matched, result.affected, result.batches, result.done) == (25, 25, 3, {"failed": 25})
    assert result.sample_ids == zombies[:5]
    assert (result.first_id, result.last_id) == (zombies[0], young)  # the last stretch ends at the table's last id
    assert {tasks.status_of(zombie) for zombie in zombies} == {"failure"} and tasks.status_of(young) == "running"


def counts_on_the_table(seen: list[str]) -> list[str]:
    return [s for s in seen if "count(" in s.lower() and "processing_tasks" in s and "EXPLAIN" not in s]


def analyzed_purge(tasks: Tasks, database_url: str, old: int, young: int) -> tuple[RunResult, list[str]]:
    """Purge a table of ``old`` successes past their retention then ``young`` ones, analyzed first."""
    for minute in range(old):
        tasks.add("success", finished_at=ago(days=31, minutes=minute))
    for _ in range(young):
        tasks.add("success", finished_at=ago(days=29))
    with tasks.engine.begin() as conn:
        analyze(conn, "postgresql", "processing_tasks")
    seen = statements_of(tasks.engine)
    return purge(tasks, database_url, batch_size=50), seen


@pytest.mark.parametrize("backend", only("postgresql"), indirect=True)
def test_on_postgresql_a_purge_the_planner_expects_to_match_most_of_a_large_table_walks_it_uncounted(
    tasks: Tasks, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spans, "PLANNED_TABLE_ROWS", 200)  # a large table, as far as this test goes
    run, seen = analyzed_purge(tasks, database_url, old=400, young=100)
    result = run.policies["success_retention"]
    assert any(s.startswith("EXPLAIN") for s in seen) and not counts_on_the_table(seen)
    assert all("PROCESSING_TASKS.ID >=" in d and "RETURNING" not in d for d in deletes_seen(seen))
    assert (result.matched, result.affected, tasks.count()) == (400, 400, 100)


@pytest.mark.parametrize("backend", only("postgresql"), indirect=True)
@pytest.mark.parametrize(
    ("floor", "old", "young"), [(200, 70, 430), (1000, 400, 100)], ids=["a seventh", "a small table"]
)
def test_on_postgresql_matches_the_planner_expects_in_a_seventh_of_the_table_or_in_a_small_one_are_counted(
    tasks: Tasks, database_url: str, monkeypatch: pytest.MonkeyPatch, floor: int, old: int, young: int
) -> None:
    monkeypatch.setattr(spans, "PLANNED_TABLE_ROWS", floor)
    run, seen = analyzed_purge(tasks, database_url, old=old, young=young)
    # dense or not, the count says: an estimate is trusted alone from twice the dense share (a fifth)
    assert counts_on_the_table(seen)
    assert (run.policies["success_retention"].affected, tasks.count()) == (old, young)


# Batches that may grow, as with the default batch size: on PostgreSQL a walk whose matches are sparse
# (under a quarter of the ids) goes along the table's pages.
PAGE_WALK = {"batch_size": 10, "max_batch_size": MAX_BATCH_SIZE}


def spread_over_pages(tasks: Tasks) -> None:
    """Fill a tenth of each page, so that a few dozen rows lie on several pages."""
    with tasks.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE processing_tasks SET (fillfactor = 10)")


def pages_in(conn: Any, name: str) -> int:
    query = f"SELECT pg_relation_size('{name}') / current_setting('block_size')::int"
    return int(conn.exec_driver_sql(query).scalar_one())


def pages_of(tasks: Tasks) -> int:
    with tasks.engine.connect() as conn:
        return pages_in(conn, "processing_tasks")


def on_postgresql_with_the_primary_key_alone(test: Callable[..., None]) -> Callable[..., None]:
    """Run ``test`` on PostgreSQL alone, on a table with no index but its primary key."""
    test = pytest.mark.parametrize("indexed", [False], ids=["primary key alone"], indirect=True)(test)
    return pytest.mark.parametrize("backend", only("postgresql"), indirect=True)(test)


def one_in_five(tasks: Tasks, rows: int, status: str, old: dict[str, Any], young: dict[str, Any]) -> list[Any]:
    """Add ``rows`` rows of ``status``, every fifth with the ``old`` values (its ids returned), the rest ``young``."""
    added = [tasks.add(status, **(young if number % 5 else old)) for number in range(rows)]
    return added[::5]


@on_postgresql_with_the_primary_key_alone
def test_on_postgresql_a_sparse_purge_that_no_index_serves_walks_the_table_page_by_page(
    tasks: Tasks, database_url: str
) -> None:
    spread_over_pages(tasks)
    old = one_in_five(tasks, 200, "success", {"finished_at": ago(days=40)}, {"finished_at": ago(days=1)})
    pages = pages_of(tasks)
    seen = statements_of(tasks.engine)
    result = purge(tasks, database_url, **PAGE_WALK).policies["success_retention"]
    deletes = deletes_seen(seen)
    # 10 rows a batch, fewer than a page holds: one page a stretch, each a TID range (no index, no id list)
    assert pages >= 10 and len(deletes) == pages
    assert all("CTID >=" in d and "ID IN (" not in d and "PROCESSING_TASKS.ID >=" not in d for d in deletes)
    assert (result.matched, result.affected, tasks.count()) == (40, 40, 160)
    assert result.sample_ids == old[:5] and (result.first_id, result.last_id) == (old[0], old[-1])


@on_postgresql_with_the_primary_key_alone
def test_on_postgresql_a_dense_purge_walks_stretches_of_ids_that_it_need_not_read_back(
    tasks: Tasks, database_url: str
) -> None:
    spread_over_pages(tasks)
    for _ in range(30):
        tasks.add("success", finished_at=ago(days=40))
    seen = statements_of(tasks.engine)
    result = purge(tasks, database_url, **PAGE_WALK).policies["success_retention"]
    deletes = deletes_seen(seen)
    assert deletes and all("PROCESSING_TASKS.ID >=" in d and "RETURNING" not in d for d in deletes)
    assert (result.matched, result.affected, tasks.count()) == (30, 30, 0)


@on_postgresql_with_the_primary_key_alone
def test_on_postgresql_a_zombie_whose_failed_version_lands_on_a_later_page_is_failed_once(
    tasks: Tasks, database_url: str
) -> None:
    zombies = one_in_five(tasks, 400, "running", {"started_at": ago(hours=30)}, {"started_at": ago(hours=1)})
    pages = pages_of(tasks)
    with tasks.engine.connect() as conn:  # the last page is partly full: the first pages' failed versions go there
        last_page = f"ctid >= '({pages - 1},0)'::tid"
        first_on_last_page = conn.exec_driver_sql(f"SELECT min(id) FROM processing_tasks WHERE {last_page}").scalar()
    settings = settings_for(database_url, tasks.shape)
    table, running_timeout = open_table(tasks.engine, settings), standard_policies(settings)[:1]
    result = run_policies(table, running_timeout, NOW, RunOptions(**PAGE_WALK)).policies["running_timeout"]
    assert (result.matched, result.affected, result.done) == (80, 80, {"failed": 80})
    assert {tasks.status_of(zombie) for zombie in zombies} == {"failure"}
    with tasks.engine.connect() as conn:  # the walk met those versions again, and left them
        moved = f"SELECT count(*) FROM processing_tasks WHERE {last_page} AND id < {first_on_last_page}"
        assert conn.exec_driver_sql(moved).scalar_one() > 0


@on_postgresql_with_the_primary_key_alone
def test_on_postgresql_a_row_revived_on_its_page_before_the_stretch_is_written_is_kept(
    tasks: Tasks, database_url: str
) -> None:
    spread_over_pages(tasks)
    rows = one_in_five(tasks, 30, "success", {"finished_at": ago(days=40)}, {"finished_at": ago(days=1)})
    change_just_before_the_write(tasks.engine, tasks, rows[0], status="pending")
    result = purge(tasks, database_url, **PAGE_WALK).policies["success_retention"]
    assert tasks.status_of(rows[0]) == "pending" and tasks.count() == 25
    assert (result.matched, result.affected) == (5, 5)


@on_postgresql_with_the_primary_key_alone
def test_on_postgresql_a_locked_row_on_a_walked_page_is_retried_then_skipped_and_the_walk_goes_on(
    tasks: Tasks, database_url: str, reaper_engine: Engine
) -> None:
    spread_over_pages(tasks)
    old = one_in_five(tasks, 150, "failure", {"finished_at": ago(days=10)}, {"finished_at": ago(days=1)})
    with tasks.engine.connect() as conn:  # the stretch of one page that holds the locked row is skipped
        page = "(ctid::text::point)[0]"
        locked_page = f"(SELECT {page} FROM processing_tasks WHERE id = {old[12]})"
        query = f"SELECT id FROM processing_tasks WHERE {page} = {locked_page} AND id IN ({', '.join(map(str, old))})"
        its_page = sorted(conn.exec_driver_sql(query).scalars())
    settings = settings_for(database_url, tasks.shape)
    options = RunOptions(**PAGE_WALK, max_retries=1, sleep=lambda _: None)
    with row_locked(tasks, database_url, old[12]):
        run = run_policies(open_table(reaper_engine, settings), standard_policies(settings)[2:3], NOW, options)
    result = run.policies["failure_retention"]
    assert result.retries >= 1 and "lock conflict" in result.skip_reasons
    assert old[12] in its_page and (result.affected, result.skipped) == (30 - len(its_page), len(its_page))
    assert [task for task in old if tasks.status_of(task) is not None] == its_page


@pytest.mark.parametrize("backend", only("postgresql"), indirect=True)
def test_on_postgresql_only_a_plain_table_is_walked_by_its_pages(tasks: Tasks) -> None:
    """A partitioned table's rows lie in its partitions' pages, each partition its own range of ctids."""
    with tasks.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE parted (id integer) PARTITION BY RANGE (id)")
        conn.exec_driver_sql("CREATE TABLE parted_low PARTITION OF parted FOR VALUES FROM (0) TO (1000)")
        conn.exec_driver_sql("INSERT INTO parted SELECT generate_series(0, 999)")
    tasks.add("success")
    dialect = PostgreSQL()
    with tasks.engine.connect() as conn:
        assert dialect.table_pages(conn, tasks.table) == 1
        assert dialect.table_pages(conn, Table("parted", MetaData())) is None
        assert dialect.table_pages(conn, Table("parted_low", MetaData())) == pages_in(conn, "parted_low")


def test_a_row_revived_inside_a_range_before_its_delete_is_kept(
    tasks: Tasks, database_url: str, engine: Engine
) -> None:
    rows = [tasks.add("success", finished_at=ago(days=40, minutes=minute)) for minute in range(6)]
    change_just_before_the_write(engine, tasks, rows[2], status="pending")
    result = purge(tasks, database_url, batch_size=4).policies["success_retention"]
    assert tasks.status_of(rows[2]) == "pending" and tasks.count() == 1
    assert (result.matched, result.affected) == (5, 5)


@pytest.mark.parametrize("size", [1, 3, 7])
def test_ranges_cover_every_row_whatever_the_batch_size_and_ties_in_the_age(
    tasks: Tasks, database_url: str, size: int
) -> None:
    moment = ago(days=35)
    for _ in range(8):  # the same finished time: the range must split ties by id
        tasks.add("success", finished_at=moment)
    for days in (31, 33):
        tasks.add("success", finished_at=ago(days=days))
    tasks.add("success", updated_at=ago(days=50))  # no finished time: the null segment, by id
    result = purge(tasks, database_url, batch_size=size).policies["success_retention"]
    assert (result.matched, result.affected, tasks.count()) == (11, 11, 0)
    assert result.batches >= 11 // size


@pytest.mark.slow
@pytest.mark.parametrize("young_per_old", [0, 4], ids=["key walk", "index ranges"])
def test_a_locked_row_in_a_purge_is_retried_then_skipped_and_the_purge_goes_on(
    tasks: Tasks, database_url: str, young_per_old: int, reaper_engine: Engine
) -> None:
    old = []
    for _ in range(3):  # with young rows between them, too sparse to walk the primary key
        old.append(tasks.add("failure", finished_at=ago(days=10)))
        for _ in range(young_per_old):
            tasks.add("failure", finished_at=ago(days=1))
    settings = settings_for(database_url, tasks.shape)
    options = RunOptions(batch_size=1, max_retries=1, sleep=lambda _: None)
    with row_locked(tasks, database_url, old[1]):
        run = run_policies(open_table(reaper_engine, settings), standard_policies(settings)[2:3], NOW, options)
    result = run.policies["failure_retention"]
    assert result.retries >= 1 and "lock conflict" in result.skip_reasons
    if database_url.startswith("sqlite"):  # SQLite locks the whole database, so every batch waits
        assert (result.affected, result.skipped) == (0, 3)
    else:
        assert (result.affected, result.skipped) == (2, 1)
        assert [tasks.status_of(task) for task in old] == [None, "failure", None]


def test_a_refused_range_is_written_in_id_lists_no_longer_than_one_statement_binds(
    tasks: Tasks, database_url: str, reaper_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_writes import run

    import reaper.engine.ranges

    ids = [tasks.add("failure", finished_at=ago(days=10)) for _ in range(10)]
    referenced_by_outputs(tasks, [ids[2], ids[6]])
    lists: list[int] = []
    real_write = reaper.engine.ranges.write_batch
    monkeypatch.setattr(reaper.engine.ranges, "MAX_ID_LIST", 3)
    monkeypatch.setattr(
        reaper.engine.ranges, "write_batch", lambda ctx, rows: lists.append(len(rows)) or real_write(ctx, rows)
    )
    result = run(reaper_engine, database_url, tasks, 2, batch_size=10).policies["failure_retention"]
    assert (result.matched, result.affected, result.skipped) == (10, 8, 2)
    assert lists and max(lists) <= 3 and sum(lists) == 10  # the refused range of 10 ids, 3 at a time


@pytest.mark.parametrize("indexed", [False, True], ids=["primary key walk", "dense index span"], indirect=True)
def test_the_application_can_write_a_row_that_a_purge_stretch_scans_but_leaves(
    tasks: Tasks, database_url: str, backend: str, indexed: bool, reaper_engine: Engine
) -> None:
    old = [tasks.add("success", finished_at=ago(days=40)) for _ in range(6)]
    young = tasks.add("success", finished_at=ago(days=1))
    old.append(tasks.add("success", finished_at=ago(days=40)))  # the young row lies inside the stretch
    application = create_engine(database_url)
    written: list[int] = []

    def while_the_stretch_is_uncommitted(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if written or not statement.lstrip().upper().startswith("DELETE"):
            return
        with application.begin() as app:  # as the application: a short lock wait, then it gives up
            if backend == "mariadb":
                app.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 1")
            elif backend == "postgresql":
                app.exec_driver_sql("SET LOCAL lock_timeout = '1s'")
            if backend != "sqlite":  # SQLite locks the whole file: no row-level question to ask
                written.append(app.execute(text_update(tasks), {"id": young}).rowcount)

    event.listen(reaper_engine, "after_cursor_execute", while_the_stretch_is_uncommitted)
    settings = settings_for(database_url, tasks.shape)
    run = run_policies(open_table(reaper_engine, settings), standard_policies(settings)[3:], NOW, RunOptions())
    application.dispose()
    assert run.policies["success_retention"].affected == len(old)
    assert tasks.count() == 1 and tasks.get(young) is not None
    if backend != "sqlite":
        assert written == [1]  # not a lock wait timeout: InnoDB at REPEATABLE READ would lock the row it scanned


def text_update(tasks: Tasks) -> Any:
    """The application's write to one task: its time of last update."""
    names, table = tasks.shape.columns, tasks.table.name
    return text(f"UPDATE {table} SET {names['updated_at']} = {names['updated_at']} WHERE {names['id']} = :id")
