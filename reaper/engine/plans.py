"""How a run reads each rule's matches: along an index that serves the rule, or along the primary key.

A rule's matches are read in the order (status, first age column, id) (see ``selection``). That is
cheap only where an index serves the order: its columns start with (status, first age column) and go
on with the primary key, written out or appended by the database itself (InnoDB appends the primary
key to every secondary index; SQLite appends the rowid, which an INTEGER PRIMARY KEY is). Without
such an index every batch makes the database find and sort all the remaining matches again, which
is quadratic in their number. So a rule without one walks the primary key instead (``keywalk`` and
``ranges``): ranges of ids, each read or written with the rule's whole condition, one pass over the
table whatever its indexes. The plan is made once per run, from the indexes the table has then: the
application's own as much as the ones ``reaper --check-indexes`` recommends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reaper.database.schema import ExistingIndex
from reaper.database.table import TaskTable
from reaper.policy.matching import dating_columns
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


@dataclass(frozen=True)
class Plan:
    """How one rule of a policy reads its matches, and the index that would serve it."""

    policy: str
    rule: str
    wanted: tuple[str, ...]  # what a serving index starts with: (status, first age column[, id])
    index: ExistingIndex | None  # None: a primary-key walk
    found: RuleCount | None = None  # a primary-key walk's matches as the run's opening count found them

    def describe(self) -> str:
        """Say the plan as ``--check-indexes`` and the run's first log line do."""
        if self.index is not None:
            return f"index {self.index.name} ({', '.join(self.index.columns)})"
        return f"primary-key walk (no index on ({', '.join(self.wanted)}))"

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form used by ``--check-indexes --json``."""
        return {
            "policy": self.policy,
            "rule": self.rule,
            "plan": "index" if self.index is not None else "primary-key walk",
            "index": None if self.index is None else self.index.name,
            "index_columns": None if self.index is None else list(self.index.columns),
            "wanted": list(self.wanted),
        }


def existing_indexes(table: TaskTable) -> list[ExistingIndex]:
    """Return the table's indexes, unique constraints and primary key, as the database reports them now."""
    return table.dialect.indexes(table.engine, table.table)


def appends_primary_key(table: TaskTable) -> bool:
    """Whether every secondary index of the table ends with its primary key without naming it."""
    return table.dialect.appends_primary_key(table.table, table.id)


def serving_index(table: TaskTable, columns: tuple[str, ...], indexes: list[ExistingIndex]) -> ExistingIndex | None:
    """Return an index that reads ``columns`` in the order ``(*columns, id)``, or ``None``."""
    ordered = (*columns, table.id.name)
    implicit = appends_primary_key(table)
    for index in indexes:
        if index.columns[: len(ordered)] == ordered or (implicit and index.columns == columns):
            return index
    return None


def rule_columns(table: TaskTable, policy: Policy, rule: Rule) -> tuple[str, ...]:
    """Return (status, first age column) of ``rule``: the columns its reads go along."""
    first_age_column = dating_columns(table, policy, rule)[0][1]
    return (table.status.name, first_age_column.name)


def plan_policy(table: TaskTable, policy: Policy, indexes: list[ExistingIndex]) -> dict[Rule, Plan]:
    """Return the plan of each rule of ``policy`` given the table's ``indexes``."""
    plans = {}
    for rule in policy.rules:
        columns = rule_columns(table, policy, rule)
        wanted = columns if appends_primary_key(table) else (*columns, table.id.name)
        plans[rule] = Plan(policy.name, rule.key, wanted, serving_index(table, columns, indexes))
    return plans


def plan_policies(
    table: TaskTable, policies: Sequence[Policy], indexes: list[ExistingIndex] | None = None
) -> dict[str, dict[Rule, Plan]]:
    """Return every rule's plan, by policy name, from ``indexes`` (by default: reflected now)."""
    indexes = existing_indexes(table) if indexes is None else indexes
    return {policy.name: plan_policy(table, policy, indexes) for policy in policies}


def status_leads(table: TaskTable, indexes: list[ExistingIndex]) -> bool:
    """Whether an index leads with the status column: whether a status rows may not hold is a look-up."""
    return any(index.columns[:1] == (table.status.name,) for index in indexes)


def describe_plans(plans: dict[str, dict[Rule, Plan]]) -> str:
    """Return one line that says each policy's plan (rules with their own plan are named)."""
    parts = []
    for name, by_rule in plans.items():
        described = {plan.describe() for plan in by_rule.values()}
        if len(described) == 1:
            parts.append(f"{name}: {described.pop()}")
            continue
        parts += [f"{name} [{plan.rule}]: {plan.describe()}" for plan in by_rule.values()]
    return "; ".join(parts)
