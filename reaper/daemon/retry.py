"""When a failed nightly cleanup is tried again: after 1, 2, 4 ... minutes, for up to ``cleanup_retry_hours``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from loguru import logger

FIRST_RETRY_SECONDS = 60.0


@dataclass(frozen=True)
class CleanupRetry:
    """A failed cleanup's next try: the how-many-th, when it is due, and when the first try failed."""

    attempt: int
    due: datetime
    first_failure: datetime


def retry_delay_seconds(attempt: int, since_failure: float, window: float) -> float | None:
    """Return the wait before retry ``attempt`` of a failed cleanup: 1, 2, 4 ... min, ending ``window`` s after it."""
    left = window - since_failure
    if left <= 0:
        return None
    return min(FIRST_RETRY_SECONDS * 2.0 ** (attempt - 1), left)


def next_retry(failed: CleanupRetry | None, now: datetime, window: float) -> CleanupRetry | None:
    """The try after ``failed`` (after a first failure when ``None``), failed at ``now``; ``None`` past ``window`` s."""
    first = failed.first_failure if failed else now
    attempt = failed.attempt + 1 if failed else 1
    delay = retry_delay_seconds(attempt, (now - first).total_seconds(), window)
    if delay is None:
        if window:
            logger.error(f"cleanup failed {attempt} times in {window / 3600:g} h; the next is the scheduled one")
        return None
    logger.warning(f"cleanup failed; try {attempt} in {delay / 60:.1f} min")
    return CleanupRetry(attempt, now + timedelta(seconds=delay), first)
