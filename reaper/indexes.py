"""The indexes the policies and statistics need, which of them a table lacks, and how to add them.

Each policy reads its matches along (status, first age column, id) (see ``selection``; for running
tasks the heartbeat column comes first when one is configured), so that
index lets a batch read about as many entries as it returns; the statistics count rows created in
the last day, served by (created_at). On MySQL and MariaDB, InnoDB appends the primary key to
every secondary index, so an index on (status, age column) already serves. reaper only
recommends: it never changes a schema by itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import Index, inspect
from sqlalchemy.schema import CreateIndex

from reaper.table import TaskTable

IDENTIFIER_LIMIT = 60
PURPOSES = {
    "running": "running_timeout",
    "pending": "pending_timeout",
    "failure": "failure_retention, success_retention",
}


@dataclass(frozen=True)
class IndexAdvice:
    """One recommended index: what it serves, its columns, whether the table has it, its DDL."""

    purpose: str
    columns: tuple[str, ...]
    present: bool
    create_statement: str


def _wanted(table: TaskTable) -> dict[tuple[str, ...], str]:
    wanted: dict[tuple[str, ...], str] = {}
    for status, purpose in PURPOSES.items():
        heartbeat = table.column("heartbeat_at") if status == "running" else None
        first_age_column = heartbeat if heartbeat is not None else table.age_columns(status)[0]
        columns = (table.status.name, first_age_column.name, table.id.name)
        wanted[columns] = f"{wanted[columns]}, {purpose}" if columns in wanted else purpose
    wanted.setdefault((table.columns["created_at"].name,), "statistics (created in the last 24 hours)")
    return wanted


def _existing(table: TaskTable) -> list[tuple[str, ...]]:
    inspector, schema = inspect(table.engine), table.table.schema
    # An expression in an index has no column name (None): "" never equals a column's name.
    indexes = inspector.get_indexes(table.name, schema=schema)
    found = [tuple(name or "" for name in index["column_names"]) for index in indexes]
    found += [tuple(unique["column_names"]) for unique in inspector.get_unique_constraints(table.name, schema=schema)]
    found.append(tuple(inspector.get_pk_constraint(table.name, schema=schema)["constrained_columns"]))
    return found


def _index_name(table_name: str, columns: tuple[str, ...]) -> str:
    name = f"ix_{table_name}_{'_'.join(columns)}"
    if len(name) > IDENTIFIER_LIMIT:
        name = f"ix_{table_name[:30]}_{hashlib.sha256(name.encode()).hexdigest()[:12]}"
    return name


def check_indexes(table: TaskTable) -> list[IndexAdvice]:
    """Return every recommended index and whether an existing index already starts with its columns."""
    existing = _existing(table)
    implicit_key = table.engine.dialect.name in ("mysql", "mariadb")
    advice = []
    for columns, purpose in _wanted(table).items():
        needed = columns[:-1] if implicit_key and columns[-1] == table.id.name and len(columns) > 1 else columns
        present = any(found[: len(needed)] == needed for found in existing)
        index = Index(_index_name(table.name, columns), *(table.table.c[name] for name in columns))
        statement = str(CreateIndex(index).compile(dialect=table.engine.dialect)).strip()
        advice.append(IndexAdvice(purpose, columns, present, statement + ";"))
    return advice


def render_index_report(advice: list[IndexAdvice], table_name: str) -> str:
    """Return the ``--check-indexes`` report: each index, and the statements for the missing ones."""
    lines = [f"Indexes reaper recommends on {table_name}:"]
    for item in advice:
        state = "present" if item.present else "MISSING"
        lines.append(f"  {state:<8} ({', '.join(item.columns)})  for {item.purpose}")
    missing = [item for item in advice if not item.present]
    if missing:
        lines += ["", "To add the missing ones (reaper never changes the schema itself):"]
        lines += [f"  {item.create_statement}" for item in missing]
    else:
        lines.append("All recommended indexes are present.")
    return "\n".join(lines)

