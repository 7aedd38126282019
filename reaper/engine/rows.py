"""The rows a batch reads, with their parts named: key and position.

A batch's SELECT lists ``(*key, *position)``: the key (the id, and the rest of a primary key the id
is a part of; see ``TaskTable.key``) and the values a keyset read is ordered by, to resume after the
last row (``selection``; empty for a walk of the primary key). Nothing else is read: every write
carries the rule's whole condition and values the same for every row of the batch (see ``writes``),
so a read along an index stays within the index. ``RowShape`` lists those columns once, for the
SELECT, and names the parts of each row read with them, so that no reader counts offsets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, NamedTuple

from sqlalchemy.engine import Result
from sqlalchemy.sql.elements import ColumnElement

from reaper.database.table import TaskTable


class TaskRow(NamedTuple):
    """One row a batch read, as the driver read it, with its parts named by the shape it was read with."""

    values: Sequence[Any]
    shape: RowShape

    @property
    def id(self) -> Any:
        """The row's id: the first column of its key."""
        return self.values[0]

    @property
    def key(self) -> tuple[Any, ...]:
        """The row's key: its id, and the rest of a primary key the id is a part of."""
        return tuple(self.values[: self.shape.key_end])

    @property
    def position(self) -> tuple[Any, ...]:
        """Where a keyset read stands after this row (empty for a walk of the primary key)."""
        return tuple(self.values[self.shape.key_end : self.shape.position_end])


@dataclass(frozen=True, eq=False)  # columns compared with == make SQL, not a truth value
class RowShape:
    """The columns of a batch's SELECT, in order, and where each part of a row read with them lies."""

    key: tuple[ColumnElement[Any], ...]
    position: tuple[ColumnElement[Any], ...] = ()
    key_end: int = field(init=False)
    position_end: int = field(init=False)

    def __post_init__(self) -> None:
        # The offsets, once: a row keeps the driver's tuple and slices it only for the part asked for.
        object.__setattr__(self, "key_end", len(self.key))
        object.__setattr__(self, "position_end", self.key_end + len(self.position))

    @property
    def columns(self) -> list[ColumnElement[Any]]:
        """The SELECT list: the key, then the position."""
        return [*self.key, *self.position]

    def rows(self, read: Result[Any]) -> list[TaskRow]:
        """The rows read with ``columns``, each with its parts named (about a tuple's cost a row)."""
        # fetched at once: row by row, psycopg took 5 us a row (0.24 s of 50,000)
        return list(map(TaskRow, read.all(), repeat(self)))


def key_shape(table: TaskTable) -> RowShape:
    """The shape of a read of keys alone."""
    return RowShape(table.key)


def position_shape(table: TaskTable, position: Sequence[ColumnElement[Any]]) -> RowShape:
    """The shape of a keyset read: keys and the ``position`` it is ordered by."""
    return RowShape(table.key, tuple(position))
