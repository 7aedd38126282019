"""Which rows a rule matches: the SQL condition, and the same judgement made in Python for one row.

A row's age comes from the first of its age columns that has a value (see ``table.AGE_COLUMNS``);
each column is compared with its own cut-off: a heartbeat against the heartbeat limit, the other
columns against the policy's threshold. So with a heartbeat column, a running row that has beaten
is judged only by its last beat, and one that never has falls back to its start time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, false, or_, true
from sqlalchemy.schema import Column
from sqlalchemy.sql.elements import ColumnElement

from reaper.database.table import TaskTable
from reaper.policy.policies import Action, Policy, Rule


@dataclass(frozen=True)
class Dating:
    """One age column of a rule, and the moment before which its value makes a row old enough."""

    role: str
    column: Column[Any]
    cutoff: datetime
    threshold: str

    @property
    def is_heartbeat(self) -> bool:
        """Whether this is the heartbeat column."""
        return self.role == "heartbeat_at"


def dating_columns(table: TaskTable, policy: Policy, rule: Rule) -> list[tuple[str, Column[Any]]]:
    """Return the age columns of ``rule``'s rows, by role, in the order they count."""
    heartbeat = table.column("heartbeat_at")
    columns = [("heartbeat_at", heartbeat)] if rule.heartbeat_max_age is not None and heartbeat is not None else []
    return columns + [(role, table.columns[role]) for role in table.age_roles(policy.status)]


def datings(table: TaskTable, policy: Policy, rule: Rule, now: datetime) -> list[Dating]:
    """Return the age columns of ``rule``'s rows in the order they count, each with its cut-off."""
    dates = []
    for role, column in dating_columns(table, policy, rule):
        if role == "heartbeat_at" and rule.heartbeat_max_age is not None:
            dates.append(Dating(role, column, now - rule.heartbeat_max_age, f"{rule.heartbeat_threshold} heartbeat"))
        else:
            dates.append(Dating(role, column, now - rule.max_age, rule.threshold))
    return dates


def dated_before(table: TaskTable, dates: Sequence[Dating]) -> ColumnElement[bool]:
    """Return ``c1 < x1 OR (c1 IS NULL AND (c2 < x2 OR ...))``: each column with its own cut-off."""
    first, rest = dates[0], dates[1:]
    condition = table.before(first.column, first.cutoff)
    if not rest:
        return condition
    return or_(condition, and_(first.column.is_(None), dated_before(table, rest)))


def type_scope(table: TaskTable, policy: Policy, rule: Rule) -> ColumnElement[bool]:
    """Return the condition that a row belongs to ``rule``: its task types, or none of the named ones."""
    task_type = table.column("task_type")
    if not policy.named_types:
        return true()
    if task_type is None:  # refused at start (table.check_fit); never let every rule match every row
        return true() if not rule.task_types else false()
    if rule.task_types:
        return task_type.in_(rule.task_types)
    return or_(task_type.is_(None), task_type.not_in(policy.named_types))


def rule_condition(table: TaskTable, policy: Policy, rule: Rule, now: datetime) -> ColumnElement[bool]:
    """Return the whole condition of ``rule`` at ``now``: status, task type and age."""
    return and_(table.status_is(policy.status), beyond_status(table, policy, rule, now))


def beyond_status(table: TaskTable, policy: Policy, rule: Rule, now: datetime) -> ColumnElement[bool]:
    """Return the condition of ``rule`` at ``now`` but its status test: task type and age."""
    return and_(type_scope(table, policy, rule), dated_before(table, datings(table, policy, rule, now)))


def dated_by(table: TaskTable, dates: Sequence[Dating], values: Sequence[Any]) -> tuple[Dating, datetime] | None:
    """Return the age column that dates a row (given its values, in ``dates``'s order) and the moment."""
    for item, value in zip(dates, values, strict=True):
        if value is None:
            continue
        moment = table.from_db(value, item.column)
        return None if moment is None else (item, moment)  # a value that is no time dates nothing, as in SQL
    return None


def counted_attempts(table: TaskTable, rule: Rule) -> Column[Any] | None:
    """The attempts column when ``rule`` requeues with a bound: a count foresees the rows it fails instead."""
    attempts = table.column("attempts")
    if rule.action is not Action.REQUEUE or rule.max_attempts is None:
        return None
    return attempts
