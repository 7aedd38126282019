"""What a pass found and did: per rule, per policy and for the whole run, with their ``--json`` forms.

The engine fills these as each batch commits (``engine.reap``); the command line renders them, the
daemon turns them into metrics and its status page, and the audit line records them. They sit
below all of those, so that none of them reaches back into the engine to read a result.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reaper.formats import json_value
from reaper.policy.policies import Action, Policy


@dataclass
class RuleResult:
    """What one rule of a policy (one task type, or the default ``*``) found and did."""

    threshold: str
    action: str
    heartbeat_threshold: str | None = None
    matched: int = 0
    affected: int = 0
    done: Counter[str] = field(default_factory=Counter)  # rows by action done

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form used by ``--json``."""
        return {
            "threshold": self.threshold,
            "heartbeat_threshold": self.heartbeat_threshold,
            "action": self.action,
            "matched": self.matched,
            "affected": self.affected,
            "by_action": dict(self.done),
        }


@dataclass
class PolicyResult:
    """What one policy found and did in one pass."""

    policy: str
    status: str
    action: str
    threshold: str
    cutoff: datetime
    matched: int = 0
    affected: int = 0
    skipped: int = 0
    skip_reasons: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    batches: int = 0
    sample_ids: list[Any] = field(default_factory=list)
    stop_reason: str | None = None
    first_id: Any = None
    last_id: Any = None
    done: Counter[str] = field(default_factory=Counter)  # rows by action done
    rules: dict[str, RuleResult] = field(default_factory=dict)

    @classmethod
    def starting(cls, policy: Policy, now: datetime) -> PolicyResult:
        """Return the empty result of ``policy``, with a line per rule."""
        result = cls(policy.name, policy.status, policy.action.value, policy.threshold, policy.cutoff(now))
        for rule in policy.rules:
            result.rules[rule.key] = RuleResult(rule.threshold, rule.action.value, rule.heartbeat_threshold)
        return result

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form used by ``--json``."""
        return {
            "matched": self.matched,
            "affected": self.affected,
            "skipped": self.skipped,
            "skip_reasons": dict(self.skip_reasons),
            "retries": self.retries,
            "action": self.action,
            "status": self.status,
            "threshold": self.threshold,
            "cutoff": self.cutoff.isoformat(),
            "batches": self.batches,
            "sample_ids": [json_value(value) for value in self.sample_ids],
            "id_range": [json_value(self.first_id), json_value(self.last_id)],
            "stopped": self.stop_reason,
            "by_action": dict(self.done),
            "rules": {key: rule.to_json() for key, rule in self.rules.items()},
        }


@dataclass
class RunResult:
    """The outcome of one pass over a list of policies."""

    dry_run: bool
    now: datetime
    policies: dict[str, PolicyResult]
    duration_seconds: float = 0.0
    stop_reason: str | None = None
    throttle: dict[str, float] = field(default_factory=dict)  # seconds paused, per reason
    failed: bool = False  # ended by an error or a second signal, in the middle of a batch

    @property
    def throttled_seconds(self) -> float:
        """Seconds the pass paused for the server's load or a replica's lag."""
        return sum(self.throttle.values())

    @property
    def stopped_early(self) -> bool:
        """Whether the pass ended before every policy had finished."""
        return self.stop_reason is not None

    @property
    def affected(self) -> int:
        """Rows changed or deleted by the whole pass."""
        return sum(result.affected for result in self.policies.values())

    @property
    def matched(self) -> int:
        """Rows the whole pass selected."""
        return sum(result.matched for result in self.policies.values())

    @property
    def skipped(self) -> int:
        """Rows the whole pass could not write (locked, or refused by a constraint)."""
        return sum(result.skipped for result in self.policies.values())

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form used by ``--json``."""
        return {
            "dry_run": self.dry_run,
            "now": self.now.isoformat(),
            "policies": {name: result.to_json() for name, result in self.policies.items()},
            "duration_seconds": round(self.duration_seconds, 6),
            "stopped_early": self.stopped_early,
            "stop_reason": self.stop_reason,
            "throttled_seconds": round(self.throttled_seconds, 3),
            "throttle": {reason: round(seconds, 3) for reason, seconds in self.throttle.items()},
        }


def done_text(done: dict[str, int], action: str, affected: int, dry_run: bool) -> str:
    """Say what was (or, in a dry run, would be) done: ``3 failed, 2 requeued`` or ``would be deleted``."""
    listed = ", ".join(f"{count} {verb}" for verb, count in done.items())
    if dry_run:
        return (
            f"would be: {listed}"
            if listed and list(done) != [Action(action).done]
            else f"would be {Action(action).done}"
        )
    return listed or f"{affected} {Action(action).done}"
