"""running_timeout: a task running longer than its limit is a zombie; it is set to failure, or requeued.

Its rows are those of status running. A row that has beaten (the table has a heartbeat column and
the row a value there) is judged by its last beat against the heartbeat limit; any other by its
start time (else its last update, else its creation) against the age limit. Requeue sets a row back
to pending for a worker to take again; with an attempts column, a row whose attempts have reached
``max_attempts`` is set to failure instead. Every write re-checks the whole condition, so a task
that finishes or beats meanwhile is left alone.
"""

from __future__ import annotations

from reaper.policy.spec import MAX_ATTEMPTS, Action, ActionChoice, Limit, PolicySpec, Unit

SPEC = PolicySpec(
    name="running_timeout",
    status="running",
    age=Limit("running_timeout_hours", Unit.HOURS, 24.0, "hours a task may run", flag="--running-timeout"),
    action=ActionChoice(
        "running_timeout_action", (Action.FAIL, Action.REQUEUE), "what running_timeout does to a zombie"
    ),
    heartbeat=Limit(
        "heartbeat_timeout_minutes", Unit.MINUTES, 10.0,
        "with a heartbeat column: a running task whose last heartbeat is older is a zombie",
    ),
    attempts=MAX_ATTEMPTS,
)
