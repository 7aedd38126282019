"""The clean-up policies: which rows (status, task type and age) and what to do with them.

A policy holds one rule per task type named in ``[task_types.NAME]`` plus a default rule for every
other task type (rows without a type included). The rules of a policy never overlap, so a row is
judged by exactly one threshold and one action. The standard policies are built from their specs
(``catalog``) and the settings in force; ``--force-status`` builds one of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from reaper.database.table import ACTIVE_STATUSES, TERMINAL_STATUSES
from reaper.policy.catalog import STANDARD_SPECS
from reaper.policy.spec import Action, ActionChoice, PolicySpec, Unit
from reaper.settings.model import Settings, TaskTypeSettings

# The engine and the CLI import Action from here, with Policy and Rule; the specs declare it.
__all__ = ["DEFAULT_RULE", "Action", "Policy", "Rule", "force_policy", "standard_policies"]

DEFAULT_RULE = "*"


@dataclass(frozen=True)
class Rule:
    """A policy's threshold and action for some task types, or (``task_types`` empty) for all others.

    ``heartbeat_max_age`` is set when the table has a heartbeat column and the policy has a
    heartbeat limit: a row that has beaten is judged by its last beat, one that never has by its age.
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
        beat = self.heartbeat_max_age
        return None if beat is None else Unit.MINUTES.describe(beat / timedelta(minutes=1))


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


def _rule(spec: PolicySpec, types: tuple[str, ...], limits: TaskTypeSettings, heartbeat: bool) -> Rule:
    """Build the rule of ``spec`` from one task type's (or the global) settings in force."""
    age = limits.limit(spec.age)
    beat = spec.heartbeat.unit.duration(limits.limit(spec.heartbeat)) if spec.heartbeat and heartbeat else None
    action = limits.chosen(spec.action) if isinstance(spec.action, ActionChoice) else spec.action
    attempts = limits.count(spec.attempts) if spec.attempts else None
    return Rule(types, spec.age.unit.duration(age), action, spec.age.unit.describe(age), beat, attempts)


def standard_policies(settings: Settings) -> list[Policy]:
    """Return the standard policies, with the thresholds in ``settings`` and its task types."""
    heartbeat = settings.task_table.columns.heartbeat_at is not None
    in_force = settings.policies
    scopes: list[tuple[tuple[str, ...], TaskTypeSettings]] = [((), in_force.for_task_type(None))]
    scopes += [((name,), in_force.for_task_type(name)) for name in sorted(in_force.task_types)]
    rules = {spec: tuple(_rule(spec, types, limits, heartbeat) for types, limits in scopes) for spec in STANDARD_SPECS}
    return [Policy(spec.name, spec.status, rules[spec]) for spec in STANDARD_SPECS]


def force_policy(status: str, older_than_days: float) -> Policy:
    """Return the one-off policy of ``--force-status``: delete terminal rows, fail active ones.

    It applies one threshold to every task type and ignores heartbeats: it is an override.
    """
    if status not in ACTIVE_STATUSES + TERMINAL_STATUSES:
        raise ValueError(f"unknown status role {status!r}")
    action = Action.DELETE if status in TERMINAL_STATUSES else Action.FAIL
    rule = Rule((), Unit.DAYS.duration(older_than_days), action, Unit.DAYS.describe(older_than_days))
    return Policy(f"force_{status}", status, (rule,))
