"""The clean-up policies: which rows (status, task type and age) and what to do with them.

A policy holds one rule per task type named in ``[task_types.NAME]`` plus a default rule for every
other task type (rows without a type included). The rules of a policy never overlap, so a row is
judged by exactly one threshold and one action.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from reaper.database.table import ACTIVE_STATUSES, TERMINAL_STATUSES
from reaper.formats import IN_DAYS, IN_HOURS, IN_MINUTES, duration_text
from reaper.settings.model import Settings, TaskTypeSettings

STANDARD_POLICY_NAMES = ("running_timeout", "pending_timeout", "failure_retention", "success_retention")
DEFAULT_RULE = "*"


class Action(StrEnum):
    """What a policy does to the rows it matches."""

    FAIL = "fail"
    DELETE = "delete"
    REQUEUE = "requeue"

    @property
    def done(self) -> str:
        """The past tense, as used in metric labels and summaries (``failed``, ``deleted``, ``requeued``)."""
        return {"fail": "failed", "delete": "deleted", "requeue": "requeued"}[self.value]


@dataclass(frozen=True)
class Rule:
    """A policy's threshold and action for some task types, or (``task_types`` empty) for all others.

    ``heartbeat_max_age`` is set when the table has a heartbeat column and the policy is the
    running one: a row that has beaten is judged by its last beat, one that never has by its age.
    ``max_attempts`` bounds ``requeue``: a row whose attempts have reached it is failed instead.
    """

    task_types: tuple[str, ...]
    max_age: timedelta
    action: Action
    threshold: str
    heartbeat_max_age: timedelta | None = None
    max_attempts: int | None = None

    @property
    def key(self) -> str:
        """The rule's name in reports: its task type, or ``*`` for the default rule."""
        return ",".join(self.task_types) or DEFAULT_RULE

    @property
    def heartbeat_threshold(self) -> str | None:
        """The heartbeat limit as people read it (``10 min``), when the rule has one."""
        if self.heartbeat_max_age is None:
            return None
        return duration_text(self.heartbeat_max_age.total_seconds(), IN_MINUTES)


@dataclass(frozen=True)
class Policy:
    """One clean-up rule set: rows of ``status`` older than their rule's threshold get its action."""

    name: str
    status: str
    rules: tuple[Rule, ...]

    @property
    def default(self) -> Rule:
        """The rule for task types no other rule names."""
        return next(rule for rule in self.rules if not rule.task_types)

    @property
    def max_age(self) -> timedelta:
        """The default rule's threshold."""
        return self.default.max_age

    @property
    def action(self) -> Action:
        """The default rule's action."""
        return self.default.action

    @property
    def actions(self) -> set[Action]:
        """Every action some rule of this policy takes."""
        return {rule.action for rule in self.rules}

    @property
    def threshold(self) -> str:
        """The default rule's threshold as people read it (``24 h``)."""
        return self.default.threshold

    @property
    def named_types(self) -> tuple[str, ...]:
        """The task types that have a rule of their own."""
        return tuple(name for rule in self.rules for name in rule.task_types)

    def cutoff(self, now: datetime) -> datetime:
        """Return the moment before which a row is old enough for the default rule."""
        return now - self.max_age


def _rule(name: str, types: tuple[str, ...], settings: TaskTypeSettings, heartbeat: bool) -> Rule:
    """Build the rule of policy ``name`` from one task type's (or the global) settings."""
    assert settings.running_timeout_hours and settings.pending_timeout_hours  # filled by Settings.for_task_type
    assert settings.failure_retention_days and settings.success_retention_days and settings.heartbeat_timeout_minutes
    if name == "running_timeout":
        beat = timedelta(minutes=settings.heartbeat_timeout_minutes) if heartbeat else None
        hours = settings.running_timeout_hours
        action = Action(settings.running_timeout_action or "fail")
        threshold = duration_text(hours * 3600, IN_HOURS)
        return Rule(types, timedelta(hours=hours), action, threshold, beat, settings.max_attempts)
    if name == "pending_timeout":
        hours = settings.pending_timeout_hours
        action = Action(settings.pending_timeout_action or "fail")
        threshold = duration_text(hours * 3600, IN_HOURS)
        return Rule(types, timedelta(hours=hours), action, threshold, None, settings.max_attempts)
    days = settings.failure_retention_days if name == "failure_retention" else settings.success_retention_days
    return Rule(types, timedelta(days=days), Action.DELETE, duration_text(days * 86400, IN_DAYS))


POLICY_STATUS = {
    "running_timeout": "running",
    "pending_timeout": "pending",
    "failure_retention": "failure",
    "success_retention": "success",
}


def standard_policies(settings: Settings) -> list[Policy]:
    """Return the four default policies, with the thresholds in ``settings`` and its task types."""
    heartbeat = settings.columns.heartbeat_at is not None
    policies = []
    for name in STANDARD_POLICY_NAMES:
        rules = [_rule(name, (), settings.for_task_type(None), heartbeat)]
        rules += [
            _rule(name, (task_type,), settings.for_task_type(task_type), heartbeat)
            for task_type in sorted(settings.task_types)
        ]
        policies.append(Policy(name, POLICY_STATUS[name], tuple(rules)))
    return policies


def force_policy(status: str, older_than_days: float) -> Policy:
    """Return the one-off policy of ``--force-status``: delete terminal rows, fail active ones.

    It applies one threshold to every task type and ignores heartbeats: it is an override.
    """
    if status not in ACTIVE_STATUSES + TERMINAL_STATUSES:
        raise ValueError(f"unknown status role {status!r}")
    action = Action.DELETE if status in TERMINAL_STATUSES else Action.FAIL
    rule = Rule((), timedelta(days=older_than_days), action, duration_text(older_than_days * 86400, IN_DAYS))
    return Policy(f"force_{status}", status, (rule,))
