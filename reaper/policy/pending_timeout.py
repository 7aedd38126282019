"""pending_timeout: a task waiting longer than its limit is a zombie; it is set to failure, or requeued.

Its rows are those of status pending, dated by their creation; when some policy requeues, by their
last update (else their creation), so that a requeued task waits a whole limit again. Requeue and
``max_attempts`` work as for ``running_timeout``.
"""

from __future__ import annotations

from reaper.policy.spec import MAX_ATTEMPTS, Action, ActionChoice, Limit, PolicySpec, Unit

SPEC = PolicySpec(
    name="pending_timeout",
    status="pending",
    age=Limit("pending_timeout_hours", Unit.HOURS, 2.0, "hours a task may wait", flag="--pending-timeout"),
    action=ActionChoice(
        "pending_timeout_action", (Action.FAIL, Action.REQUEUE), "what pending_timeout does to a zombie"
    ),
    attempts=MAX_ATTEMPTS,
)
