"""The size of the next batch: grown while write transactions are quick, shrunk while they are slow.

A batch of a fixed size is either too small or too large: on a quiet server a 1,000-row delete
commits in milliseconds and the commits cost as much as the deletes (``bench/batch_ceiling.py
--database sqlite``: a walk along the primary key ran at 0.69x of one bare DELETE in batches of
1,000 ids, 1.05x in batches of 10,000); on a busy one the same batch took 490 ms
(``bench/purge.py``), holding its locks that long. So, with a target
time per write transaction (``REAPER_BATCH_TIME_SECONDS``), a batch slower than the target shrinks
the next one in proportion (at least by half), and a full batch faster than 80 % of the target grows
the next toward that (at most doubling it), up to a ceiling.

The first batch has ``REAPER_BATCH_SIZE`` rows. The ceiling is ``REAPER_BATCH_SIZE`` itself when the
user set it (flag, environment or file): a size chosen on purpose is a limit that batches never
exceed, as ``--chunk-size`` set by hand disables ``pt-online-schema-change``'s ``--chunk-time``.
Left at its default, batches grow up to ``MAX_BATCH_SIZE`` when deleted by range, and up to
``MAX_ID_LIST`` when read as ids and written with ``WHERE id IN (...)``. Runs that archive hold each
batch's whole rows in memory: they never grow past ``REAPER_BATCH_SIZE``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

# The limits are the settings' (REAPER_BATCH_SIZE is bounded by them); named here too for the callers of sizing.
from reaper.settings.batching import MAX_BATCH_SIZE as MAX_BATCH_SIZE
from reaper.settings.batching import MAX_ID_LIST as MAX_ID_LIST

# A full batch quicker than this share of the target grows the next toward it. Growing only below half
# the target, as doubling does, stops where each commit has a large fixed cost: on SQLite, with four
# indexes at 1 M rows, a commit rewrites index pages all over each index, 0.14 s for 2,000 ids and
# 0.21 s for 8,000; batches stayed at 2,000-3,000 ids, and 800,000 deletes took 36-50 s, 28-36 s
# with this aim (and the 64 MiB page cache both times).
GROWTH_AIM = 0.8
MIN_GROWTH = 1.25  # a smaller step is within the noise of one batch's time


@dataclass
class BatchSizer:
    """The current batch size, adapted to the time each write transaction takes."""

    first: int
    target_seconds: float | None = None
    timer: Callable[[], float] = time.monotonic  # what the callers time their writes with
    ceiling: int | None = None  # None: ``first`` is also the most
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = self.first

    @property
    def most(self) -> int:
        """The largest size a batch may reach."""
        return max(self.first, self.ceiling or self.first)

    def observe(self, rows: int, seconds: float, full: bool | None = None) -> None:
        """Adapt the next batch's size to how long a batch of ``rows`` rows took to write.

        Only a full batch (``rows`` at least the size, unless ``full`` says) grows the next: a quick
        batch of few rows says nothing of how long a full one would take.
        """
        if not self.target_seconds:
            return
        if seconds > self.target_seconds:  # at least halved; as far as the overshoot says, in one step
            self.size = max(1, int(min(self.size, rows) * min(0.5, self.target_seconds / seconds)))
        elif rows >= self.size if full is None else full:
            # toward GROWTH_AIM of the target, as if time grew with the rows: it grows slower where each
            # commit costs a fixed part, so the aim is met from below, step by step
            growth = min(2.0, self.target_seconds * GROWTH_AIM / seconds) if seconds > 0 else 2.0
            if growth >= MIN_GROWTH:
                self.size = min(self.most, int(self.size * growth))

    def restart(self) -> None:
        """Start again from the first size (a new walk whose rows may cost more, or count otherwise)."""
        self.size = self.first
