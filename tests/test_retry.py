"""When a failed nightly cleanup is tried again."""

from __future__ import annotations

from reaper.daemon.retry import retry_delay_seconds


def test_retries_of_a_failed_cleanup_wait_one_two_four_minutes_and_end_after_the_retry_window() -> None:
    elapsed, delays = 0.0, []
    while (delay := retry_delay_seconds(len(delays) + 1, elapsed, 6 * 3600)) is not None:
        delays.append(delay / 60)
        elapsed += delay
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 105]  # the last one lands six hours after the failure
    assert retry_delay_seconds(1, 0, 0) is None  # REAPER_CLEANUP_RETRY_HOURS=0: no retry
