"""Each database's dialect, on the real database: what its errors mean once converted at the boundary,
whether it deletes with RETURNING, which dialect a URL gets; and that no module outside the database
package sees a driver's or SQLAlchemy's exceptions."""

from __future__ import annotations

import ast
import uuid
from pathlib import Path

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.engine import Engine, make_url

import servers
from helpers import SERVER_BACKENDS, Tasks, ago, referenced_by_outputs, row_locked
from reaper.database.connection import SessionLimits, create_db_engine, database_errors
from reaper.database.dialects import dialect_of
from reaper.database.lock import exclusive_run
from reaper.errors import (
    AccessDenied,
    ConfigError,
    ConstraintRefused,
    DatabaseError,
    LockConflict,
    RowRefused,
    Unreachable,
)

REAPER = Path(__file__).resolve().parents[1] / "reaper"
DATABASE_PACKAGE = REAPER / "database"
# Where the exceptions of SQLAlchemy and of the drivers live.
EXCEPTION_MODULES = ("sqlalchemy.exc", "pymysql", "MySQLdb", "psycopg", "psycopg2", "sqlite3")


def test_a_row_another_session_holds_is_a_lock_conflict(
    tasks: Tasks, database_url: str, reaper_engine: Engine
) -> None:
    task = tasks.add("running", started_at=ago(hours=30))
    with (
        row_locked(tasks, database_url, task),
        pytest.raises(LockConflict) as caught,
        database_errors(),
        reaper_engine.begin() as conn,
    ):
        conn.execute(update(tasks.table).where(tasks.table.c.id == task).values(status="failure"))
    assert caught.value.category == "lock" and not caught.value.fatal
    assert tasks.status_of(task) == "running"


def test_a_delete_a_foreign_key_refuses_is_a_constraint_refusal_that_names_the_constraint(
    tasks: Tasks, database_url: str, reaper_engine: Engine
) -> None:
    task = tasks.add("failure", finished_at=ago(days=10))
    referenced_by_outputs(tasks, [task])
    with pytest.raises(ConstraintRefused) as caught, database_errors(), reaper_engine.begin() as conn:
        conn.execute(delete(tasks.table).where(tasks.table.c.id == task))
    expected = "a FOREIGN KEY constraint" if database_url.startswith("sqlite") else "fk_outputs_task"
    assert caught.value.refused_by == expected and caught.value.category == "integrity"
    assert isinstance(caught.value, RowRefused) and tasks.get(task)


def test_a_server_that_does_not_answer_is_unreachable(database_url: str, tmp_path: Path) -> None:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        url = url.set(database=str(tmp_path / "no such folder" / "tasks.sqlite3"))
    else:
        url = url.set(port=servers.free_port())  # nothing listens there
    engine = create_db_engine(url, SessionLimits(connect_timeout_seconds=3), must_exist=False)
    try:
        with pytest.raises(Unreachable) as caught, database_errors("cannot connect"), engine.connect():
            pass
    finally:
        engine.dispose()
    assert str(caught.value).startswith("cannot connect: ") and not caught.value.fatal


@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)
def test_a_wrong_password_is_access_denied_and_fatal(database_url: str) -> None:
    url = make_url(database_url)
    engine = create_db_engine(url.set(password=f"not-{url.password}"))
    try:
        with pytest.raises(AccessDenied) as caught, database_errors(), engine.connect():
            pass
    finally:
        engine.dispose()
    assert caught.value.fatal


@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)
def test_a_missing_privilege_is_access_denied(tasks: Tasks, database_url: str, server: servers.Server) -> None:
    task = tasks.add("success", finished_at=ago(days=40))
    user = f"reaper_{uuid.uuid4().hex[:8]}"
    engine = create_db_engine(make_url(server.add_user(str(make_url(database_url).database), user, "SELECT")))
    try:
        with pytest.raises(AccessDenied), database_errors(), engine.begin() as conn:
            conn.execute(delete(tasks.table).where(tasks.table.c.id == task))
    finally:
        engine.dispose()
    assert tasks.get(task)


def test_another_database_error_is_ours_and_says_what_reaper_was_doing(reaper_engine: Engine) -> None:
    with pytest.raises(DatabaseError) as caught, database_errors("reading"), reaper_engine.connect() as conn:
        conn.execute(text("SELECT no_such_column FROM no_such_table"))
    assert type(caught.value) is DatabaseError and str(caught.value).startswith("reading: ")
    assert caught.value.category in ("operational", "database") and "\n" not in str(caught.value)


def test_an_error_converted_further_in_gets_what_reaper_was_doing_once(
    tasks: Tasks, database_url: str, reaper_engine: Engine
) -> None:
    task = tasks.add("failure", finished_at=ago(days=10))
    referenced_by_outputs(tasks, [task])
    refused = delete(tasks.table).where(tasks.table.c.id == task)
    with pytest.raises(ConstraintRefused) as caught, database_errors("the run"):  # noqa: SIM117 -- nested on purpose
        with database_errors("deleting"), reaper_engine.begin() as conn:
            conn.execute(refused)
    assert str(caught.value).startswith("deleting: ") and caught.value.where == "deleting"
    with pytest.raises(ConstraintRefused) as caught, database_errors("the run"):  # noqa: SIM117 -- nested on purpose
        with database_errors(), reaper_engine.begin() as conn:
            conn.execute(refused)
    assert str(caught.value).startswith("the run: ") and caught.value.refused_by


def test_returning_is_reported_as_the_database_runs_it(tasks: Tasks, database_url: str) -> None:
    task = tasks.add("success", finished_at=ago(days=40))
    engine = create_db_engine(make_url(database_url))  # no connection yet: the server is not known
    try:
        reported = dialect_of(engine).deletes_returning(engine)
        with engine.begin() as conn:
            deleted = conn.execute(delete(tasks.table).where(tasks.table.c.id == task).returning(tasks.table.c.id))
            assert reported and deleted.scalars().all() == [task]  # SQLite, MariaDB and PostgreSQL all have it
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("mysql+pymysql://app@db/tasks", "mysql"),
        ("mariadb+pymysql://app@db/tasks", "mysql"),
        ("postgresql+psycopg://app@db/tasks", "postgresql"),
        ("postgresql://app@db/tasks", "postgresql"),
        ("sqlite:///tasks.sqlite3", "sqlite"),
        ("oracle://app@db/tasks", "oracle"),
    ],
)
def test_a_url_gets_the_dialect_of_its_database_whatever_the_driver(url: str, name: str) -> None:
    assert dialect_of(make_url(url)).name == name == dialect_of(make_url(url).get_backend_name()).name


def test_a_database_without_a_dialect_gets_no_run_lock_and_no_load_limits() -> None:
    engine = create_db_engine(make_url("sqlite://"))
    unknown = dialect_of("oracle")
    try:
        with pytest.raises(ConfigError, match="not oracle"), unknown.run_lock(engine, "processing_tasks"):
            pass
    finally:
        engine.dispose()
    with pytest.raises(ValueError, match="not oracle"):
        unknown.check_load_names(["Threads_running"])


def test_an_in_memory_sqlite_database_needs_no_run_lock() -> None:
    engine = create_db_engine(make_url("sqlite://"))
    try:
        with exclusive_run(engine, "processing_tasks") as lock:
            assert lock.held()
    finally:
        engine.dispose()


def _exceptions_module(name: str) -> bool:
    return any(name == module or name.startswith(f"{module}.") for module in EXCEPTION_MODULES)


def exception_imports(source: str) -> list[str]:
    """The imports of SQLAlchemy's or a driver's exceptions in ``source``, and each use of ``sqlalchemy.exc``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _exceptions_module(alias.name)]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            found += [name for name in names if _exceptions_module(name)]
        elif isinstance(node, ast.Attribute) and ast.unparse(node) == "sqlalchemy.exc":
            found.append("sqlalchemy.exc")
    return found


@pytest.mark.parametrize(
    "source",
    [
        "from sqlalchemy.exc import DBAPIError",
        "from sqlalchemy import exc",
        "import sqlalchemy\nsqlalchemy.exc.OperationalError",
        "import pymysql.err",
        "from psycopg import errors",
        "import sqlite3",
    ],
)
def test_the_import_finder_sees_each_way_of_importing_exceptions(source: str) -> None:
    assert exception_imports(source)


def test_no_module_outside_the_database_package_sees_driver_or_sqlalchemy_exceptions() -> None:
    outside = [path for path in sorted(REAPER.rglob("*.py")) if DATABASE_PACKAGE not in path.parents]
    assert len(outside) > 30  # the whole package is read
    found = {str(path.relative_to(REAPER)): exception_imports(path.read_text()) for path in outside}
    assert {path: names for path, names in found.items() if names} == {}
