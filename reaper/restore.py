"""Putting archived rows back: ``reaper --restore FILE``, with its own dry run.

Rows whose id already exists are skipped (a row restored twice, or never deleted because its
delete did not commit), so a restore can be repeated safely. Values go back through the table's
own column types, so a restored row is the row that was deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from reaper.archive import read_jsonl_archive
from reaper.errors import ConfigError, SchemaError
from reaper.table import TaskTable
from reaper.values import exact_table, exact_type, from_json


@dataclass
class RestoreResult:
    """What a restore read and put back."""

    file: str
    dry_run: bool
    read: int = 0
    restored: int = 0
    already_present: int = 0

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form used by ``--json``."""
        return dict(self.__dict__)


def _rows(table: TaskTable, raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    columns = table.table.columns
    unknown = sorted({key for row in raw for key in row} - set(columns.keys()))
    if unknown:
        raise SchemaError(f"the archive has columns that table {table.name!r} lacks: {', '.join(unknown)}")
    dialect = table.engine.dialect.name
    exact = {name: exact_type(column.type, dialect) for name, column in columns.items()}
    return [{key: from_json(value, exact[key]) for key, value in row.items()} for row in raw]


def _insert_missing(table: TaskTable, rows: list[dict[str, Any]], dry_run: bool) -> tuple[int, int]:
    """Insert the rows whose id is not in the table; return (inserted, already present)."""
    id_name = table.id.name
    writer = exact_table(table.table, table.engine.dialect.name)  # values decoded for their exact types
    with table.engine.connect() as conn:
        present = set(conn.execute(select(table.id).where(table.id.in_([row[id_name] for row in rows]))).scalars())
    missing = [row for row in rows if row[id_name] not in present]
    if dry_run or not missing:
        return len(missing), len(present)
    try:
        with table.engine.begin() as conn:
            conn.execute(insert(writer), missing)
        return len(missing), len(present)
    except IntegrityError:  # a row appeared meanwhile: one at a time, skipping those that exist
        inserted = 0
        for row in missing:
            try:
                with table.engine.begin() as conn:
                    conn.execute(insert(writer), [row])
                inserted += 1
            except IntegrityError:
                continue
        return inserted, len(rows) - inserted


def restore_archive(table: TaskTable, path: Path, dry_run: bool, batch_size: int) -> RestoreResult:
    """Put the rows of archive ``path`` back into ``table``, ``batch_size`` per transaction."""
    if not path.is_file():
        raise ConfigError(f"archive file {str(path)!r} not found")
    result = RestoreResult(file=str(path), dry_run=dry_run)
    chunk: list[dict[str, Any]] = []
    for row in read_jsonl_archive(path):
        chunk.append(row)
        if len(chunk) == batch_size:
            _restore_chunk(table, chunk, dry_run, result)
            chunk = []
    if chunk:
        _restore_chunk(table, chunk, dry_run, result)
    return result


def _restore_chunk(table: TaskTable, raw: list[dict[str, Any]], dry_run: bool, result: RestoreResult) -> None:
    inserted, present = _insert_missing(table, _rows(table, raw), dry_run)
    result.read += len(raw)
    result.restored += inserted
    result.already_present += present
