"""failure_retention: a failed task older than its retention is deleted (archived first, if asked).

Its rows are those of status failure, dated by their finish time (else their last update, else
their creation).
"""

from __future__ import annotations

from reaper.policy.spec import Action, Limit, PolicySpec, Unit

SPEC = PolicySpec(
    name="failure_retention",
    status="failure",
    age=Limit("failure_retention_days", Unit.DAYS, 7.0, "days a failure is kept", flag="--failure-retention"),
    action=Action.DELETE,
)
