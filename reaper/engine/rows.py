"""The rows a batch reads, with their parts named: key, position, attempts, ages.

A batch's SELECT lists ``(*key, *position, [attempts], *age columns)``: the key (the id, and the
rest of a primary key the id is a part of; see ``TaskTable.key``); the values a keyset read is
ordered by, to resume after the last row (``selection``; empty for a walk of the primary key); the
attempts, only for a rule that requeues with a bound; the age columns in the order
``matching.datings`` counts them, only for a write that says why (a fail or a requeue: a delete
needs no age, and its read then stays within the index). ``RowShape`` lists those columns once, for
the SELECT, and names the parts of each row read with them, so that no reader counts offsets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, NamedTuple

from sqlalchemy.sql.elements import ColumnElement

from reaper.database.table import TaskTable
from reaper.policy.matching import counted_attempts, dating_columns
from reaper.policy.policies import Policy, Rule


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

    @property
    def attempts(self) -> Any:
        """The row's attempts (``None`` as well when they were not read)."""
        return None if self.shape.attempts is None else self.values[self.shape.position_end]

    @property
    def ages(self) -> tuple[Any, ...]:
        """The values of the age columns, in the order the rule counts them (empty when not read)."""
        return tuple(self.values[self.shape.ages_start :])


@dataclass(frozen=True, eq=False)  # columns compared with == make SQL, not a truth value
class RowShape:
    """The columns of a batch's SELECT, in order, and where each part of a row read with them lies."""

    key: tuple[ColumnElement[Any], ...]
    position: tuple[ColumnElement[Any], ...] = ()
    attempts: ColumnElement[Any] | None = None
    ages: tuple[ColumnElement[Any], ...] = ()
    key_end: int = field(init=False)
    position_end: int = field(init=False)
    ages_start: int = field(init=False)

    def __post_init__(self) -> None:
        # The offsets, once: a row keeps the driver's tuple and slices it only for the part asked for.
        object.__setattr__(self, "key_end", len(self.key))
        object.__setattr__(self, "position_end", self.key_end + len(self.position))
        object.__setattr__(self, "ages_start", self.position_end + (self.attempts is not None))

    @property
    def columns(self) -> list[ColumnElement[Any]]:
        """The SELECT list: the attempts before the ages, which come last."""
        attempts = [] if self.attempts is None else [self.attempts]
        return [*self.key, *self.position, *attempts, *self.ages]

    def rows(self, read: Iterable[Sequence[Any]]) -> list[TaskRow]:
        """The rows read with ``columns``, each with its parts named (about a tuple's cost a row)."""
        return list(map(TaskRow, read, repeat(self)))


def key_shape(table: TaskTable) -> RowShape:
    """The shape of a read of keys alone."""
    return RowShape(table.key)


def rule_shape(
    table: TaskTable, policy: Policy, rule: Rule, position: Sequence[ColumnElement[Any]] = (), with_age: bool = True
) -> RowShape:
    """The shape of the rows ``rule`` reads to write them: keys and ``position``, and, ``with_age``, what
    a fail or a requeue writes from (the attempts, for a bounded requeue, and the age columns)."""
    if not with_age:
        return RowShape(table.key, tuple(position))
    ages = tuple(column for _, column in dating_columns(table, policy, rule))
    return RowShape(table.key, tuple(position), counted_attempts(table, rule), ages)
