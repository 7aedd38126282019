"""Counting what a policy matches, in the database: the dry run, and a manual run's confirmation.

A dry run's figures come from aggregate queries over each rule's whole condition: the rows it
matches, how many of them a bounded requeue would fail instead (a conditional count), and the
smallest and largest id. A rule that an index serves is counted range by range of that index
(``selection.segments``: an index range each, where the whole condition, an OR across the age
columns, would make MySQL read the table); the rules that walk the primary key, of every policy of
the run, are counted together in one statement (``count_walks``), one pass over the table, which
leaves out the rules of a status no row holds where an index that leads with the status finds that
out (a dry run then reads the first and last id of each that matched, along the primary key from
each end, two reads that stop at their first match): a real run skips the walks that found nothing,
and a manual run's confirmation counts with the same pass.
The sample of ids is one small query per policy: the smallest matching ids, the ones a real run's
sample also holds. So the number of statements does not grow with the number of matches, and no
row travels to reaper to be counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from reaper.database.schema import ExistingIndex
from reaper.database.table import TaskTable
from reaper.engine.plans import Plan, RuleCount, existing_indexes, plan_policies, status_leads
from reaper.engine.selection import segments
from reaper.policy.matching import beyond_status, counted_attempts, rule_condition
from reaper.policy.policies import Policy, Rule


def _count_where(table: TaskTable, condition: ColumnElement[bool]) -> ColumnElement[Any]:
    """The aggregate that counts the rows of ``condition``: ``FILTER`` where the database takes it."""
    if table.dialect.filters_aggregates:
        return func.count().filter(condition)
    return func.count(case((condition, 1)))


def _spent(table: TaskTable, rule: Rule, *within: ColumnElement[bool]) -> ColumnElement[Any]:
    """The aggregate that counts the rows (``within`` the conditions) whose attempts reached the rule's
    bound: a bounded requeue fails them instead (0 for any other rule)."""
    attempts = counted_attempts(table, rule)
    if attempts is None or rule.max_attempts is None:
        return literal(0)
    return _count_where(table, and_(*within, attempts >= rule.max_attempts))


def _aggregate(conn: Connection, table: TaskTable, rule: Rule, where: ColumnElement[bool]) -> RuleCount:
    spent = _spent(table, rule)
    query = select(func.count(), spent, func.min(table.id), func.max(table.id)).select_from(table.table)
    matched, spent_rows, low, high = conn.execute(query.where(where)).one()
    return RuleCount(int(matched), int(spent_rows or 0), low, high)


def count_rule(
    conn: Connection, table: TaskTable, policy: Policy, rule: Rule, now: datetime, plan: Plan, spellings: list[str]
) -> RuleCount:
    """Count what ``rule`` matches at ``now``, as its ``plan`` reads it (or as the run's opening count found it)."""
    if plan.found is not None:
        return plan.found
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


Walked = Sequence[tuple[Policy, Rule]]


def _walk_counts(
    table: TaskTable, walked: Walked, condition_of: Callable[[Policy, Rule], ColumnElement[bool]]
) -> list[ColumnElement[Any]]:
    """Each rule's matches (the rows of its ``condition_of``) and spent attempts, as aggregates of a pass."""
    aggregates: list[ColumnElement[Any]] = []
    for policy, rule in walked:
        condition = condition_of(policy, rule)
        aggregates += [_count_where(table, condition), _spent(table, rule, condition)]
    return aggregates


def _walk_found(values: Sequence[Any], rules: int) -> list[RuleCount]:
    """What ``rules`` rules found, from the values of their ``_walk_counts`` aggregates, in that order."""
    return [RuleCount(int(values[2 * number]), int(values[2 * number + 1] or 0)) for number in range(rules)]


def _pass_by_rule(
    conn: Connection, table: TaskTable, walked: Walked, now: datetime, roles: Sequence[str]
) -> tuple[list[RuleCount], dict[str, str | None]]:
    """Count each rule of ``walked`` (its whole condition on every row), and find the spelling of each
    status role of ``roles`` that rows hold, in one pass over the table."""
    aggregates = _walk_counts(table, walked, lambda policy, rule: rule_condition(table, policy, rule, now))
    probes = [probe for role in roles for probe in table.spelling_probes(role)]
    row = conn.execute(select(*aggregates, *probes).select_from(table.table)).one()
    return _walk_found(row, len(walked)), dict(zip(roles, row[len(aggregates) :], strict=True))


def _pass_by_status(
    conn: Connection, table: TaskTable, walked: Walked, now: datetime, roles: Sequence[str]
) -> tuple[list[RuleCount], dict[str, str | None]]:
    """What ``_pass_by_rule`` finds, from the rows grouped by status: each rule's status test once per
    group, its other tests (type, age) on each row."""
    statuses = sorted({policy.status for policy, _ in walked} | set(roles))
    tests = [table.status_is(status) for status in statuses]
    aggregates = _walk_counts(table, walked, lambda policy, rule: beyond_status(table, policy, rule, now))
    counts, spelt = [RuleCount()] * len(walked), dict.fromkeys(roles)
    for group in conn.execute(select(table.status, *tests, *aggregates).group_by(table.status)):
        held = {status for status, test in zip(statuses, group[1 : 1 + len(tests)], strict=True) if test}
        found = _walk_found(group[1 + len(tests) :], len(walked))
        for number, (policy, _) in enumerate(walked):
            if policy.status in held:
                counts[number] = counts[number].plus(found[number])
        for role in held.intersection(roles):
            spelt[role] = max(filter(None, [spelt[role], str(group[0])]))  # as the aggregate's max would
    return counts, spelt


@dataclass(frozen=True)
class OpeningCount:
    """What the run's opening count finds besides each walked rule's matches."""

    ends: bool = False  # the first and last id of each rule that matched, as a dry run reports them
    written: Sequence[str] = ()  # the status roles a real run writes: how rows spell them
    status_leads: bool = False  # an index leads with the status: which statuses rows hold is a look-up each


def count_walks(
    table: TaskTable,
    policies: Sequence[Policy],
    now: datetime,
    plans: dict[str, dict[Rule, Plan]],
    opening: OpeningCount = OpeningCount(),
) -> dict[str, dict[Rule, Plan]]:
    """Count every rule that walks the primary key, of every policy, in one pass over the table;
    return the plans with what each found (see ``OpeningCount`` for what else the pass finds).

    One statement counts them all (a conditional count per rule, ``_count_where``: 0.5-0.65x the
    time of one count per rule on each database at 1 M rows, where also reading each rule's first
    and last id in that pass made it slower than the separate counts). Each rule adds to the pass's
    time (50 ms per 1 M rows on PostgreSQL): where an index leads with the status, a look-up finds
    the statuses no row holds, and their rules are found empty without a count. A real run skips the
    walks of the rules that found nothing. Where the dialect says so (PostgreSQL), the pass groups the
    rows by status (``_pass_by_status``): a hash per row instead of each rule's status test.
    """
    walked = [(policy, rule) for policy in policies for rule in policy.rules if plans[policy.name][rule].index is None]
    if not walked:
        return plans
    counted = {name: dict(by_rule) for name, by_rule in plans.items()}
    with table.engine.connect() as conn:
        held = _statuses_held(conn, table, {policy.status for policy, _ in walked}, opening.status_leads)
        for policy, rule in walked:
            if policy.status not in held:
                counted[policy.name][rule] = replace(plans[policy.name][rule], found=RuleCount())
        walked = [(policy, rule) for policy, rule in walked if policy.status in held]
        if not walked:
            return counted
        roles = [role for role in opening.written if table.spelling_unknown(role)]
        counting = _pass_by_status if table.dialect.counts_by_status else _pass_by_rule
        counts, spelt = counting(conn, table, walked, now, roles)
        for role, stored in spelt.items():
            table.settle_write_value(conn, role, stored)
        for (policy, rule), found in zip(walked, counts, strict=True):
            if found.matched and opening.ends:
                found = replace(found, **_ends(conn, table, rule_condition(table, policy, rule, now)))
            counted[policy.name][rule] = replace(plans[policy.name][rule], found=found)
    return counted


def counted_plans(
    table: TaskTable,
    policies: Sequence[Policy],
    now: datetime,
    ends: bool = False,
    written: Sequence[str] = (),
    indexes: Sequence[ExistingIndex] | None = None,
) -> dict[str, dict[Rule, Plan]]:
    """Plan every rule from the table's ``indexes`` (by default reflected now, once), and count the rules
    that walk the primary key in one pass (``count_walks``, with ``ends`` and ``written`` as
    ``OpeningCount`` says)."""
    indexes = existing_indexes(table) if indexes is None else list(indexes)
    opening = OpeningCount(ends, written, status_leads(table, indexes))
    return count_walks(table, policies, now, plan_policies(table, policies, indexes), opening)


def _statuses_held(conn: Connection, table: TaskTable, statuses: set[str], look_up: bool) -> set[str]:
    """Of ``statuses``, the ones some row holds, each looked up along an index (with ``look_up``); else all
    of them: without an index that leads with the status, a look-up of one no row holds reads the table."""
    if not look_up:
        return statuses
    return {status for status in statuses if table.held_spelling(conn, status) is not None}


def _ends(conn: Connection, table: TaskTable, condition: ColumnElement[bool]) -> dict[str, Any]:
    """The first and last id that ``condition`` matches, each read along the primary key from its end of
    the table: each read stops at its first match, where the aggregate of both read the whole table
    (the rows old enough to match usually hold the lowest ids, and a sparse rule's matches are met soon)."""
    first = select(table.id).where(condition).order_by(table.id).limit(1)
    last = select(table.id).where(condition).order_by(table.id.desc()).limit(1)
    return {"low": conn.execute(first).scalar(), "high": conn.execute(last).scalar()}
