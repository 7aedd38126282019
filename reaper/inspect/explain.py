"""``reaper --explain ID``: for one row, which policy and threshold apply, its ages, and the verdict.

The verdict is asked of the database with the very condition a run writes under (``matching``),
so it cannot disagree with what a run at the same moment would do; the ages and the moment the row
becomes eligible are worked out in Python from the values read.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Uuid, select
from sqlalchemy.engine import Connection

from reaper.database.table import TaskTable
from reaper.errors import EXIT_USAGE, ReaperError
from reaper.formats import EXACT_AGE, duration_text, json_value
from reaper.policy.matching import Dating, dated_by, datings, rule_condition, type_scope
from reaper.policy.policies import Action, Policy, Rule

# The verdict as a person reads it: what the next run would do, never a word that reads as this command's failure.
VERDICT_TEXT = {
    "failed": "would be marked failed",
    "requeued": "would be requeued",
    "deleted": "would be deleted",
    "none": "left alone",
}

class TaskNotFound(ReaperError):
    """No row has the id given to ``--explain``."""

    category = "not_found"


class BadTaskId(ReaperError):
    """The id given to ``--explain`` cannot be an id of the table (a usage error)."""

    exit_code = EXIT_USAGE
    category = "usage"


@dataclass
class Explanation:
    """What reaper thinks of one row at ``now``."""

    task_id: Any
    now: datetime
    status: str | None
    status_role: str
    task_type: str | None
    policy: str | None = None
    rule: str | None = None
    threshold: str | None = None
    heartbeat_threshold: str | None = None
    threshold_seconds: float | None = None
    heartbeat_threshold_seconds: float | None = None
    ages: dict[str, dict[str, Any]] = field(default_factory=dict)
    dated_by: str | None = None
    eligible_at: datetime | None = None
    attempts: int | None = None
    max_attempts: int | None = None
    verdict: str = "none"
    why: str = ""

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form used by ``--explain ID --json``."""
        return {
            "id": json_value(self.task_id),
            "now": self.now.isoformat(),
            "status": self.status,
            "status_role": self.status_role,
            "task_type": self.task_type,
            "policy": self.policy,
            "rule": self.rule,
            "threshold": self.threshold,
            "threshold_seconds": self.threshold_seconds,
            "heartbeat_threshold": self.heartbeat_threshold,
            "heartbeat_threshold_seconds": self.heartbeat_threshold_seconds,
            "ages": self.ages,
            "dated_by": self.dated_by,
            "eligible_at": self.eligible_at.isoformat() if self.eligible_at else None,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "verdict": self.verdict,
            "why": self.why,
        }


def _integer_bounds(table: TaskTable) -> tuple[int, int]:
    """The smallest and largest value the integer id column holds."""
    column_type = table.id.type
    bits = table.dialect.integer_bits(column_type)
    if getattr(column_type, "unsigned", False):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _integer_id(table: TaskTable, text: str) -> int:
    low, high = _integer_bounds(table)
    # Only ASCII digits: int() also takes '1_000' and other scripts' digits, which no one means as an id.
    if not re.fullmatch(r"[+-]?[0-9]+", text.strip()) or not low <= int(text) <= high:
        raise BadTaskId(
            f"--explain: {text!r} is not an id of {table.name} (its ids are integers from {low} to {high})"
        )
    return int(text)


def parse_task_id(table: TaskTable, text: str) -> Any:
    """Convert the id given on the command line to the id column's type; refuse what it cannot hold."""
    if not text.strip():
        raise BadTaskId("--explain: the id is empty")
    column_type = table.id.type
    if isinstance(column_type, Integer):
        return _integer_id(table, text)
    if isinstance(column_type, Uuid):
        try:
            parsed = uuid.UUID(text.strip())
        except ValueError:
            raise BadTaskId(f"--explain: {text!r} is not an id of {table.name} (its ids are UUIDs)") from None
        return parsed if column_type.as_uuid else str(parsed)
    return text


def _row(conn: Connection, table: TaskTable, task_id: Any) -> dict[str, Any]:
    # Only the columns of a role: another column may hold what the driver cannot read (time 24:00 on PostgreSQL).
    roles = list(table.columns.items())
    row = conn.execute(select(*(column for _, column in roles)).where(table.id == task_id)).first()
    if row is None:
        raise TaskNotFound(f"--explain: no row with {table.id.name} = {task_id!r} in {table.name}")
    return {role: value for (role, _), value in zip(roles, row, strict=True)}


def _rule_of(conn: Connection, table: TaskTable, policy: Policy, task_id: Any) -> Rule:
    """The rule that judges the row, asked of the database (its collation decides what a type matches)."""
    for rule in policy.rules:
        if rule.task_types and conn.execute(
            select(table.id).where(table.id == task_id, type_scope(table, policy, rule))
        ).first():
            return rule
    return policy.default


def _ages(table: TaskTable, dates: Sequence[Dating], row: dict[str, Any], now: datetime) -> dict[str, dict[str, Any]]:
    ages = {}
    for item in dates:
        moment = table.from_db(row[item.role], item.column)
        ages[item.role] = {
            "column": item.column.name,
            "value": moment.isoformat() if moment else None,
            "age_seconds": round((now - moment).total_seconds(), 3) if moment else None,
            "limit": item.threshold,
            "limit_seconds": (now - item.cutoff).total_seconds(),
        }
    return ages


def explain(table: TaskTable, policies: Sequence[Policy], task_id: Any, now: datetime) -> Explanation:
    """Explain what the policies make of the row ``task_id`` at ``now``."""
    with table.engine.connect() as conn:
        row = _row(conn, table, task_id)
        role = table.role_of(row["status"])
        explanation = Explanation(task_id, now, row["status"], role, row.get("task_type"))
        policy = next((policy for policy in policies if policy.status == role), None)
        if policy is None:
            explanation.why = f"no policy acts on {role} rows: reaper leaves this row alone"
            return explanation
        rule = _rule_of(conn, table, policy, task_id)
        matches = conn.execute(
            select(table.id).where(table.id == task_id, rule_condition(table, policy, rule, now))
        ).first() is not None
        matched_status = matches or conn.execute(
            select(table.id).where(table.id == task_id, table.status_is(policy.status))
        ).first() is not None
    if not matched_status:  # e.g. 'rUNNING': the role by name, but no spelling the policies match
        explanation.why = (
            f"{policy.name}: its stored status {row['status']!r} is not one of the spellings reaper matches "
            f"({', '.join(table.status_values(policy.status))}), so no run touches it"
        )
        return explanation
    _judge(explanation, table, policy, rule, row, matches)
    return explanation


def _judge(
    explanation: Explanation, table: TaskTable, policy: Policy, rule: Rule, row: dict[str, Any], matches: bool
) -> None:
    now = explanation.now
    explanation.policy, explanation.rule, explanation.threshold = policy.name, rule.key, rule.threshold
    explanation.heartbeat_threshold = rule.heartbeat_threshold
    explanation.threshold_seconds = rule.max_age.total_seconds()
    if rule.heartbeat_max_age is not None:
        explanation.heartbeat_threshold_seconds = rule.heartbeat_max_age.total_seconds()
    dates = datings(table, policy, rule, now)
    explanation.ages = _ages(table, dates, row, now)
    dated = dated_by(table, dates, [row[item.role] for item in dates])
    scope = f"the {rule.key} rule" if rule.task_types else "the default rule"
    if dated is None:
        explanation.why = (
            f"{policy.name} ({scope}): the row has no value in any of its age columns, so it never matches"
        )
        return
    dating, moment = dated
    explanation.dated_by = dating.role
    explanation.eligible_at = moment + (now - dating.cutoff)
    age = duration_text((now - moment).total_seconds(), EXACT_AGE)
    measured = f"{dating.role} {moment:%Y-%m-%d %H:%M:%S} UTC, {age} ago, limit {dating.threshold}"
    if not matches and explanation.eligible_at <= now:  # Python and the database disagree: say so, never guess
        explanation.why = (
            f"{policy.name} ({scope}): {measured}: over the limit as reaper reads it, yet the database does "
            "not match the row (check REAPER_DATABASE_TIMEZONE and how the column stores time)"
        )
        return
    if not matches:
        explanation.verdict = "none"
        explanation.why = (
            f"{policy.name} ({scope}): {measured}: under the limit, "
            f"eligible from {explanation.eligible_at:%Y-%m-%d %H:%M:%S} UTC"
        )
        if dating.is_heartbeat:
            explanation.why += " if no heartbeat comes before"
        return
    explanation.verdict, outcome = _action(explanation, table, rule, row)
    explanation.why = f"{policy.name} ({scope}): {measured}: over the limit; {outcome}"


def _action(explanation: Explanation, table: TaskTable, rule: Rule, row: dict[str, Any]) -> tuple[str, str]:
    """The verdict of a matching row, and why: the rule's action, bounded by the attempts for requeue."""
    if rule.action is Action.DELETE:
        return "deleted", "the next run deletes it"
    if rule.action is Action.FAIL:
        return "failed", "the next run sets it to failure"
    if table.column("attempts") is None:
        return "requeued", "the next run requeues it (no attempts column, so no bound)"
    explanation.attempts, explanation.max_attempts = row["attempts"], rule.max_attempts
    spent = row["attempts"] or 0
    if rule.max_attempts is not None and spent >= rule.max_attempts:
        return "failed", f"attempts {spent} reached the bound of {rule.max_attempts}: the next run sets it to failure"
    return "requeued", f"attempts {spent} of {rule.max_attempts}: the next run requeues it to pending"


def render_explanation(explanation: Explanation) -> str:
    """Return the human text of ``--explain``."""
    task_type = explanation.task_type if explanation.task_type is not None else "(none)"
    lines = [
        f"task {explanation.task_id}: status {explanation.status!r} ({explanation.status_role}), task type {task_type}",
        f"at {explanation.now:%Y-%m-%d %H:%M:%S} UTC",
    ]
    if explanation.policy:
        beat = f", heartbeat limit {explanation.heartbeat_threshold}" if explanation.heartbeat_threshold else ""
        lines.append(f"policy {explanation.policy}, rule {explanation.rule}: limit {explanation.threshold}{beat}")
        for role, age in explanation.ages.items():
            shown = f"{age['value']} ({duration_text(age['age_seconds'], EXACT_AGE)} ago)" if age["value"] else "empty"
            marker = "  <- dates the row" if role == explanation.dated_by else ""
            lines.append(f"  {role:<13} {age['column']:<16} {shown}{marker}")
    lines.append(f"verdict: {VERDICT_TEXT.get(explanation.verdict, explanation.verdict)}: {explanation.why}")
    return "\n".join(lines)
