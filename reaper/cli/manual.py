"""What a person running reaper by hand gets: a count first, a confirmation, progress bars, signals.

A manual run that would delete more than ``REAPER_CONFIRM_ABOVE`` rows asks on a terminal and
refuses without ``--yes`` when there is none; the count is the dry run's (``counting``: the database
counts each rule's whole condition), made before the real run. Progress bars (rows done, rate, time
left) go to stderr, only when it is a terminal and the output is not JSON. SIGINT and SIGTERM stop
a pass after the batch in hand (``SignalStop``). The daemon's scheduled runs use none of this.
"""

from __future__ import annotations

import shutil
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from types import FrameType, TracebackType
from typing import Any

from reaper.database.table import TaskTable
from reaper.engine.counting import count_policy, counted_plans
from reaper.errors import EXIT_REFUSED, EXIT_SIGNALLED, Interrupted, ReaperError
from reaper.policy.policies import Action, Policy


class ConfirmationRefused(ReaperError):
    """A large deletion was not confirmed."""

    exit_code = EXIT_REFUSED
    category = "refused"


def count_matches(table: TaskTable, policies: Sequence[Policy], now: datetime) -> dict[str, int]:
    """Return what each policy would match now, counted by the database as a dry run counts it."""
    plans = counted_plans(table, policies, now, indexes=table.indexes)  # the walked rules: one pass for all
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
        error_type: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for bar in self._bars.values():
            bar.close()


class SignalStop:
    """SIGINT and SIGTERM during a one-shot run, handled alike.

    While a pass runs (``graceful``), the first signal asks it to stop after the batch in hand: it
    commits, the audit line is written, and the command exits 130 (SIGINT) or 143 (SIGTERM).
    Elsewhere (counting, a question on the terminal, a restore), or at a second signal, the command
    stops at once (``Interrupted``), and the transaction in hand is rolled back.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._graceful = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalStop:
        if threading.current_thread() is not threading.main_thread():
            return self  # only the main thread may set handlers (a command run from a test's thread)
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # Nothing is logged here: the handler may run while the main thread holds the log's lock.
        first = self.received is None
        if first:
            self.received = signum
        if not (first and self._graceful):
            raise Interrupted(signum)

    @contextmanager
    def graceful(self) -> Iterator[None]:
        """Within the body, a first signal only asks the pass to stop between batches."""
        self._graceful = True
        try:
            yield
        finally:
            self._graceful = False

    def reason(self) -> str | None:
        """Why the pass should stop (``interrupted by SIGTERM``), or ``None``: a pass's stop request."""
        return None if self.received is None else f"interrupted by {signal.Signals(self.received).name}"

    @property
    def exit_code(self) -> int:
        """The exit code of a command a signal stopped: 128 plus its number, as a shell reports it."""
        return EXIT_SIGNALLED + (self.received or signal.SIGINT)
