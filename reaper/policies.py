"""The clean-up policies: which rows (status and age) and what to do with them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from reaper.settings import Settings
from reaper.table import ACTIVE_STATUSES, TERMINAL_STATUSES

STANDARD_POLICY_NAMES = ("running_timeout", "pending_timeout", "failure_retention", "success_retention")


class Action(StrEnum):
    """What a policy does to the rows it matches."""

    FAIL = "fail"
    DELETE = "delete"

    @property
    def done(self) -> str:
        """The past tense, as used in metric labels and summaries (``failed``, ``deleted``)."""
        return "failed" if self is Action.FAIL else "deleted"


@dataclass(frozen=True)
class Policy:
    """One clean-up rule: rows of ``status`` older than ``max_age`` get ``action``."""

    name: str
    status: str
    max_age: timedelta
    action: Action
    threshold: str

    def cutoff(self, now: datetime) -> datetime:
        """Return the moment before which a row is old enough for this policy."""
        return now - self.max_age


def _hours(value: float) -> str:
    return f"{value:g} h"


def _days(value: float) -> str:
    return f"{value:g} d"


def standard_policies(settings: Settings) -> list[Policy]:
    """Return the four policies of the seed, with the thresholds in ``settings``."""
    return [
        Policy(
            "running_timeout",
            "running",
            timedelta(hours=settings.running_timeout_hours),
            Action.FAIL,
            _hours(settings.running_timeout_hours),
        ),
        Policy(
            "pending_timeout",
            "pending",
            timedelta(hours=settings.pending_timeout_hours),
            Action.FAIL,
            _hours(settings.pending_timeout_hours),
        ),
        Policy(
            "failure_retention",
            "failure",
            timedelta(days=settings.failure_retention_days),
            Action.DELETE,
            _days(settings.failure_retention_days),
        ),
        Policy(
            "success_retention",
            "success",
            timedelta(days=settings.success_retention_days),
            Action.DELETE,
            _days(settings.success_retention_days),
        ),
    ]


def force_policy(status: str, older_than_days: float) -> Policy:
    """Return the one-off policy of ``--force-status``: delete terminal rows, fail active ones."""
    if status not in ACTIVE_STATUSES + TERMINAL_STATUSES:
        raise ValueError(f"unknown status role {status!r}")
    action = Action.DELETE if status in TERMINAL_STATUSES else Action.FAIL
    return Policy(f"force_{status}", status, timedelta(days=older_than_days), action, _days(older_than_days))
