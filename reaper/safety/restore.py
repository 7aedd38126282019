"""Putting archived rows back: ``reaper --restore FILE``, with its own dry run.

The whole file is read and checked before anything is inserted: a damaged file (a bad byte, a line
that is not JSON, a value that does not fit its column) restores nothing, and the error says where
(member, line). Only the last member may be cut short, as a run killed while writing it leaves it:
its rows were never deleted, which the table confirms (they are all still there), so it is skipped
and said so; a file cut short where rows are missing from the table is damaged.

Rows whose id already exists are skipped (a row restored twice, or never deleted because its
delete did not commit), so a restore can be repeated safely. A row the database refuses (a foreign
key whose parent is gone, a new NOT NULL column) is counted with the constraint's name, the others
go in, and the restore fails. Values go back through the table's exact column types (values.py), so
a restored row is the row that was deleted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import InvalidOperation
from pathlib import Path
from typing import Any

from loguru import logger
from sqlalchemy import insert, select
from sqlalchemy.types import TypeEngine

from reaper.database.connection import database_errors
from reaper.database.table import TaskTable
from reaper.database.values import exact_table, exact_type, from_json
from reaper.errors import ConfigError, RowRefused, SchemaError
from reaper.safety.jsonl import DamagedArchive, Member, archive_members


@dataclass
class RestoreResult:
    """What a restore read and put back."""

    file: str
    dry_run: bool
    read: int = 0
    restored: int = 0
    already_present: int = 0
    refused: int = 0
    refused_by: dict[str, int] = field(default_factory=dict)  # why the database refused rows -> how many
    cut_short: int = 0  # readable rows of a last member cut short by a killed run, skipped

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form used by ``--json``."""
        return {**self.__dict__, "refused_by": dict(self.refused_by)}


class _Rows:
    """Decodes an archive's lines for one table, naming where a line is damaged."""

    def __init__(self, table: TaskTable, path: Path) -> None:
        self.table, self.path = table, path
        dialect = table.engine.dialect.name
        self.exact: dict[str, TypeEngine[Any]] = {
            name: exact_type(column.type, dialect) for name, column in table.table.columns.items()
        }

    def decode(self, member: Member) -> list[dict[str, Any]]:
        """The rows of ``member``, decoded for the table's columns."""
        return [self._row(line, member.number, number) for number, line in enumerate(member.lines, start=1)]

    def ids(self, member: Member, decoded: list[dict[str, Any]]) -> list[Any] | None:
        """The ids of the rows a member holds: those its header names, else those of its readable lines."""
        id_name = self.table.id.name
        if member.ids is None:
            return [row[id_name] for row in decoded] or None
        try:
            return [from_json(value, self.exact[id_name]) for value in member.ids]
        except (ValueError, TypeError) as exc:
            raise DamagedArchive(f"archive file {str(self.path)!r}, member {member.number}: its ids: {exc}") from None

    def _damaged(self, member: int, line: int, what: str) -> DamagedArchive:
        where = f"archive file {str(self.path)!r}, member {member}, line {line}"
        return DamagedArchive(f"{where}: {what}; nothing restored")

    def _row(self, line: bytes, member: int, number: int) -> dict[str, Any]:
        try:
            raw = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise self._damaged(member, number, f"not UTF-8 text (byte {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise self._damaged(member, number, f"not JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(raw, dict):
            raise self._damaged(member, number, "not a JSON object")
        id_name = self.table.id.name
        if raw.get(id_name) is None:
            raise self._damaged(member, number, f"no id ({id_name!r})")
        unknown = sorted(set(raw) - set(self.exact))
        if unknown:
            raise SchemaError(
                f"archive file {str(self.path)!r}, member {member}, line {number}: columns that table "
                f"{self.table.name!r} lacks: {', '.join(unknown)}; nothing restored"
            )
        return {key: self._value(key, value, member, number) for key, value in raw.items()}

    def _value(self, key: str, value: Any, member: int, number: int) -> Any:
        try:
            return from_json(value, self.exact[key])
        except (ValueError, TypeError, InvalidOperation) as exc:
            raise self._damaged(member, number, f"{key}: {exc}") from None


def _present(table: TaskTable, ids: list[Any]) -> set[Any]:
    """Which of ``ids`` the table holds."""
    with table.engine.connect() as conn:
        return set(conn.execute(select(table.id).where(table.id.in_(ids))).scalars())


def _check(table: TaskTable, path: Path, result: RestoreResult) -> None:
    """Read and decode every line before anything is inserted; judge a last member cut short."""
    rows = _Rows(table, path)
    for member in archive_members(path):
        decoded = rows.decode(member)
        if member.complete:
            result.read += len(decoded)
        else:
            _judge_cut_short(table, path, member, rows.ids(member, decoded), result)


def _judge_cut_short(
    table: TaskTable, path: Path, member: Member, ids: list[Any] | None, result: RestoreResult
) -> None:
    """Skip a last member cut short whose rows are all still in the table: a run killed while writing it,
    before its delete committed. One whose rows are gone is a file that lost deleted rows: damaged."""
    where = f"archive file {str(path)!r} is cut short in member {member.number}, its last"
    if not ids:
        logger.warning(f"{where}, before it named its rows (written by an earlier reaper, or cut in its header): "
                       "skipped, unchecked")
        return
    missing = len(ids) - len(_present(table, ids))
    if missing:
        raise DamagedArchive(
            f"{where}, and {missing} of the {len(ids)} rows it names are not in table {table.name!r}: the file "
            "was cut after their delete committed, and lost them; nothing restored"
        )
    result.cut_short = len(ids)
    logger.warning(f"{where}, as a run killed while writing it leaves it; the {len(ids)} rows it names are all in "
                   f"table {table.name!r} (that batch was never deleted): skipped")


def _chunks(table: TaskTable, path: Path, size: int) -> Iterator[list[dict[str, Any]]]:
    rows = _Rows(table, path)
    chunk: list[dict[str, Any]] = []
    for member in archive_members(path):
        if not member.complete:
            break
        for row in rows.decode(member):
            chunk.append(row)
            if len(chunk) == size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _insert(table: TaskTable, writer: Any, rows: list[dict[str, Any]], result: RestoreResult) -> None:
    """Insert ``rows`` in one transaction; when the database refuses, halve until the refused rows are found."""
    try:
        with database_errors(), table.engine.begin() as conn:
            conn.execute(insert(writer), rows)
    except RowRefused as exc:
        if len(rows) > 1:
            middle = len(rows) // 2
            _insert(table, writer, rows[:middle], result)
            _insert(table, writer, rows[middle:], result)
            return
        task_id = rows[0][table.id.name]
        if _present(table, [task_id]):  # inserted meanwhile, by someone else
            result.already_present += 1
            return
        reason = exc.refused_by
        logger.warning(f"id {task_id!r} refused by the database: {reason}")
        result.refused += 1
        result.refused_by[reason] = result.refused_by.get(reason, 0) + 1
        return
    result.restored += len(rows)


def restore_archive(
    table: TaskTable, path: Path, dry_run: bool, batch_size: int, result: RestoreResult | None = None
) -> RestoreResult:
    """Put the rows of archive ``path`` back into ``table``, ``batch_size`` per transaction; count into
    ``result`` as each transaction commits, when given (a caller keeps it if the restore fails)."""
    if not path.is_file():
        raise ConfigError(f"archive file {str(path)!r} not found")
    result = result or RestoreResult(file=str(path), dry_run=dry_run)
    with database_errors():
        _restore(table, path, dry_run, batch_size, result)
    return result


def _restore(table: TaskTable, path: Path, dry_run: bool, batch_size: int, result: RestoreResult) -> None:
    _check(table, path, result)
    writer = exact_table(table.table, table.engine.dialect.name)  # values decoded for their exact types
    for chunk in _chunks(table, path, batch_size):
        present = _present(table, [row[table.id.name] for row in chunk])
        missing = [row for row in chunk if row[table.id.name] not in present]
        result.already_present += len(chunk) - len(missing)
        if dry_run:
            result.restored += len(missing)
        elif missing:
            _insert(table, writer, missing, result)
