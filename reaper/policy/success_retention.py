"""success_retention: a successful task older than its retention is deleted (archived first, if asked).

Its rows are those of status success, dated by their finish time (else their last update, else
their creation).
"""

from __future__ import annotations

from reaper.policy.spec import Action, Limit, PolicySpec, Unit

SPEC = PolicySpec(
    name="success_retention",
    status="success",
    age=Limit("success_retention_days", Unit.DAYS, 30.0, "days a success is kept", flag="--success-retention"),
    action=Action.DELETE,
)
