"""What a person running reaper by hand gets: a count first, a confirmation, progress bars.

A manual run that would delete more than ``REAPER_CONFIRM_ABOVE`` rows asks on a terminal and
refuses without ``--yes`` when there is none; the count is the dry run's (``counting``: the database
counts each rule's whole condition), made before the real run. Progress bars (rows done, rate, time
left) go to stderr, only when it is a terminal and the output is not JSON. The daemon's scheduled runs use none of this.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

from reaper.counting import count_policy
from reaper.errors import ReaperError
from reaper.plans import plan_policies
from reaper.policies import Action, Policy
from reaper.table import TaskTable


class ConfirmationRefused(ReaperError):
    """A large deletion was not confirmed."""

    exit_code = 4
    kind = "refused"


def count_matches(table: TaskTable, policies: Sequence[Policy], now: datetime) -> dict[str, int]:
    """Return what each policy would match now, counted by the database as a dry run counts it."""
    plans = plan_policies(table, policies)
    return {
        policy.name: sum(count.matched for count in count_policy(table, policy, now, plans[policy.name]).values())
        for policy in policies
    }


def confirm_deletions(
    counts: dict[str, int],
    policies: Sequence[Policy],
    limit: int,
    assume_yes: bool,
    ask: Callable[[str], str] | None,
) -> None:
    """Raise ``ConfirmationRefused`` unless deleting the counted rows is within ``limit`` or confirmed.

    ``ask`` prompts on the terminal and returns the answer; ``None`` means there is no terminal.
    """
    deleting = sum(counts.get(policy.name, 0) for policy in policies if policy.action is Action.DELETE)
    if deleting <= limit or assume_yes:
        return
    question = f"This run would delete {deleting} rows, more than REAPER_CONFIRM_ABOVE={limit}. Type yes to go on: "
    if ask is None:
        raise ConfirmationRefused(
            f"this run would delete {deleting} rows (more than REAPER_CONFIRM_ABOVE={limit}) "
            "and there is no terminal to confirm it: run again with --yes"
        )
    if ask(question).strip().lower() != "yes":
        raise ConfirmationRefused(f"not confirmed: nothing deleted ({deleting} rows would have been)")


class ProgressBars:
    """One progress bar per policy, fed by the run's progress callback; silent when disabled."""

    def __init__(self, totals: dict[str, int], enabled: bool, stream: Any) -> None:
        self.totals = totals
        self.enabled = enabled
        self.stream = stream
        self._bars: dict[str, Any] = {}

    def advance(self, policy: str, rows: int) -> None:
        """Count ``rows`` more done for ``policy``."""
        if not self.enabled:
            return
        bar = self._bars.get(policy)
        if bar is None:
            for other in self._bars.values():
                other.close()
            from tqdm import tqdm  # only when a bar is shown: unattended runs skip its import

            # A terminal that reports no width (a bare pty) would get an empty bar: fall back to 80.
            width = shutil.get_terminal_size().columns
            bar = tqdm(total=self.totals.get(policy), desc=policy, unit="rows", file=self.stream, ncols=width)
            self._bars[policy] = bar
        bar.update(rows)

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for bar in self._bars.values():
            bar.close()
