"""The size of the next batch: at most ``batch_size``, smaller while transactions run long.

A batch of a fixed size can take far longer than usual when the server is busy (a 1,000-row
delete took 20 ms alone and 490 ms under an application's load in ``bench/purge.py``), and a long
transaction holds its locks that long. With a target time per write transaction
(``REAPER_BATCH_TIME_SECONDS``), a batch slower than the target halves the next one, and a full
batch faster than half the target doubles it back, never above ``batch_size``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class BatchSizer:
    """The current batch size, adapted to the time each write transaction takes."""

    limit: int
    target_seconds: float | None = None
    timer: Callable[[], float] = time.monotonic  # what the callers time their writes with
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = self.limit

    def observe(self, rows: int, seconds: float) -> None:
        """Adapt the next batch's size to how long a batch of ``rows`` rows took to write."""
        if not self.target_seconds:
            return
        if seconds > self.target_seconds:
            self.size = max(1, min(self.size, rows) // 2)
        elif rows >= self.size and seconds < self.target_seconds / 2:
            self.size = min(self.limit, self.size * 2)
