"""What a policy declares: the rows it judges, what it may do to them, and the settings that tune it.

A ``PolicySpec`` is the whole of a policy's own knowledge; the rest of reaper reads it: the settings
(its keys become ``REAPER_*`` variables, TOML keys and ``[task_types.NAME]`` keys, validated by the
bounds declared here), the metrics (its name is the ``policy`` label, its actions' past tenses the
``action`` label), ``--check-indexes`` (the index its status and first age column want), the audit
line (its name and its settings) and the daemon (a policy that finds zombies runs in every rescue).

This module imports nothing of reaper's, so that the settings, which sit below the engine, can read
the specs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum


class Action(StrEnum):
    """What a policy does to the rows it matches."""

    FAIL = "fail"
    DELETE = "delete"
    REQUEUE = "requeue"

    @property
    def done(self) -> str:
        """The past tense, as used in metric labels and summaries (``failed``, ``deleted``, ``requeued``)."""
        return {"fail": "failed", "delete": "deleted", "requeue": "requeued"}[self.value]


class Unit(StrEnum):
    """The unit an age limit is given in; its setting's key ends with it (``running_timeout_hours``)."""

    MINUTES = "minutes"
    HOURS = "hours"
    DAYS = "days"

    def duration(self, value: float) -> timedelta:
        """Return ``value`` of this unit as a duration."""
        return timedelta(**{self.value: value})

    def describe(self, value: float) -> str:
        """Return ``value`` of this unit as people read it (``24 h``, ``7 d``, ``10 min``)."""
        symbol = {"minutes": "min", "hours": "h", "days": "d"}[self.value]
        return f"{value:g} {symbol}"


@dataclass(frozen=True)
class Limit:
    """An age limit setting: its key (``REAPER_<KEY>``, the TOML key), unit, default and flag.

    Its value is a number above 0 and at most a century in its unit (the settings enforce it).
    """

    key: str
    unit: Unit
    default: float
    doc: str
    flag: str | None = None  # the command-line flag that sets it, if any

    @property
    def label(self) -> str:
        """The name it goes by in metrics (``threshold`` of ``reaper_task_type_threshold_seconds``)."""
        return self.key.removesuffix(f"_{self.unit.value}")


@dataclass(frozen=True)
class ActionChoice:
    """A setting that picks what a policy does, among ``choices``; the first is the default."""

    key: str
    choices: tuple[Action, ...]
    doc: str


@dataclass(frozen=True)
class Count:
    """A whole-number setting, from ``least`` to ``most``."""

    key: str
    default: int
    least: int
    most: int
    doc: str


Option = Limit | ActionChoice | Count

# Shared by the policies that requeue: one bound for every requeue, so it is declared once.
MAX_ATTEMPTS = Count(
    "max_attempts", 3, 1, 1000,
    "with an attempts column: a zombie due for a requeue whose attempts have reached this is set to failure instead",
)


@dataclass(frozen=True)
class PolicySpec:
    """One policy: rows of ``status`` older than its ``age`` limit get its action.

    Its rows are dated by the age columns of their status (``database.table.AGE_COLUMNS``), after
    the heartbeat column when the policy has a ``heartbeat`` limit and the table has that column.
    ``action`` is the one thing it does, or the setting that chooses among several.
    """

    name: str  # the policy's name in results, JSON, logs, metric labels and the audit line
    status: str  # the status role of its rows (settings.table.Statuses)
    age: Limit
    action: Action | ActionChoice
    heartbeat: Limit | None = None
    attempts: Count | None = None  # bounds requeues; only for a policy that may requeue

    def __post_init__(self) -> None:
        if not self.age.key.endswith(f"_{self.age.unit.value}"):
            raise ValueError(f"{self.name}: the age setting's key must end with its unit ({self.age.unit.value})")
        if isinstance(self.action, ActionChoice) and not self.action.choices:
            raise ValueError(f"{self.name}: an action setting needs at least one choice")
        if self.attempts is not None and Action.REQUEUE not in self.actions:
            raise ValueError(f"{self.name}: an attempts bound needs requeue among the actions")

    @property
    def actions(self) -> tuple[Action, ...]:
        """Every action the policy may take; the first is its default."""
        return self.action.choices if isinstance(self.action, ActionChoice) else (self.action,)

    @property
    def finds_zombies(self) -> bool:
        """Whether its rows are zombies (it fails or requeues them, never deletes).

        Such a policy runs in the daemon's rescues between nightly cleanups, and the statistics and
        metrics count its stale rows.
        """
        return Action.DELETE not in self.actions

    @property
    def options(self) -> tuple[Option, ...]:
        """Its settings: the age limit, the heartbeat limit, the action choice, the attempts bound."""
        found: list[Option] = [self.age]
        if self.heartbeat is not None:
            found.append(self.heartbeat)
        if isinstance(self.action, ActionChoice):
            found.append(self.action)
        if self.attempts is not None:
            found.append(self.attempts)
        return tuple(found)
