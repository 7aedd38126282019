"""Counting what a policy matches, in the database: the dry run, and a manual run's confirmation.

A dry run's figures come from aggregate queries over each rule's whole condition: the rows it
matches, how many of them a bounded requeue would fail instead (a conditional count), and the
smallest and largest id. A rule that an index serves is counted range by range of that index
(``selection.segments``: an index range each, where the whole condition, an OR across the age
columns, would make MySQL read the table); a rule that walks the primary key is counted in one
statement, one pass over the table. The sample of ids is one small query per policy: the smallest
matching ids, the ones a real run's sample also holds. So the number of statements does not grow
with the number of matches, and no row travels to reaper to be counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, literal, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from reaper.database.table import TaskTable
from reaper.engine.plans import Plan
from reaper.engine.selection import segments
from reaper.policy.matching import counted_attempts, rule_condition
from reaper.policy.policies import Action, Policy, Rule


@dataclass(frozen=True)
class RuleCount:
    """What one rule matches now: rows, rows a bounded requeue would fail, the id range."""

    matched: int = 0
    spent: int = 0  # of the matches, rows whose attempts reached the bound: failed, not requeued
    low: Any = None
    high: Any = None

    def plus(self, other: RuleCount) -> RuleCount:
        """Return the count of two disjoint parts together."""
        lows = [value for value in (self.low, other.low) if value is not None]
        highs = [value for value in (self.high, other.high) if value is not None]
        return RuleCount(
            self.matched + other.matched,
            self.spent + other.spent,
            min(lows) if lows else None,
            max(highs) if highs else None,
        )

    def done(self, rule: Rule) -> dict[str, int]:
        """What a real run would do to these rows, by action (the dry run's ``by_action``)."""
        if not self.matched:
            return {}
        if rule.action is not Action.REQUEUE:
            return {rule.action.done: self.matched}
        foreseen = {"requeued": self.matched - self.spent, "failed": self.spent}
        return {action: count for action, count in foreseen.items() if count}


def _aggregate(conn: Connection, table: TaskTable, rule: Rule, where: ColumnElement[bool]) -> RuleCount:
    attempts = counted_attempts(table, rule)
    spent: ColumnElement[Any] = literal(0)
    if attempts is not None and rule.max_attempts is not None:
        spent = func.coalesce(func.sum(case((attempts >= rule.max_attempts, 1), else_=0)), 0)
    query = select(func.count(), spent, func.min(table.id), func.max(table.id)).select_from(table.table)
    matched, spent_rows, low, high = conn.execute(query.where(where)).one()
    return RuleCount(int(matched), int(spent_rows or 0), low, high)


def count_rule(
    conn: Connection, table: TaskTable, policy: Policy, rule: Rule, now: datetime, plan: Plan, spellings: list[str]
) -> RuleCount:
    """Count what ``rule`` matches at ``now``, as its ``plan`` reads it."""
    if plan.index is None:
        return _aggregate(conn, table, rule, rule_condition(table, policy, rule, now))
    total = RuleCount()
    for segment in segments(table, policy, now, spellings):
        if segment.rule is rule:
            total = total.plus(_aggregate(conn, table, rule, segment.where))
    return total


def sample_ids(conn: Connection, table: TaskTable, policy: Policy, now: datetime, size: int) -> list[Any]:
    """Return the ``size`` smallest ids ``policy`` matches at ``now`` (one query, a bounded top-N)."""
    if size <= 0:
        return []
    condition = or_(*(rule_condition(table, policy, rule, now) for rule in policy.rules))
    query = select(table.id).where(condition).order_by(table.id).limit(size)
    return list(conn.execute(query).scalars())


def count_policy(
    table: TaskTable, policy: Policy, now: datetime, plans: dict[Rule, Plan]
) -> dict[Rule, RuleCount]:
    """Count each rule of ``policy`` at ``now``."""
    with table.engine.connect() as conn:
        # Only an index plan counts segment by segment of the spellings rows hold; probing them costs
        # a whole-table scan per spelling absent where no index leads with the status.
        indexed = any(plans[rule].index is not None for rule in policy.rules)
        spellings = table.stored_spellings(conn, policy.status) if indexed else []
        return {rule: count_rule(conn, table, policy, rule, now, plans[rule], spellings) for rule in policy.rules}
