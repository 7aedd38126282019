"""The daemon's jobs, guarded: a failure is logged and counted, never fatal, and a job still running
when it comes due again is skipped, not started twice; the long ones run in threads of their own, so
that the loop keeps ticking."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from loguru import logger

from reaper.daemon.metrics import ReaperMetrics
from reaper.errors import ReaperError


class Jobs:
    """Guards for the daemon's jobs, one lock per job name, and the threads of those running in the background."""

    def __init__(self, metrics: ReaperMetrics) -> None:
        self.metrics = metrics
        self._busy: dict[str, threading.Lock] = {}
        self._threads: list[threading.Thread] = []

    def guarded(self, name: str, job: Callable[[], object]) -> Callable[[], None]:
        """Wrap ``job`` so that a failure is logged and counted, and two runs never overlap."""
        busy = self._busy.setdefault(name, threading.Lock())

        def run_guarded() -> None:
            if not busy.acquire(blocking=False):
                self.metrics.jobs_skipped.labels(name).inc()
                logger.warning(f"job {name} is still running; this turn is skipped")
                return
            try:
                job()
            except Exception as exc:  # one failing job must never stop the loop
                category = exc.category if isinstance(exc, ReaperError) else type(exc).__name__
                self.metrics.job_failures.labels(name, category).inc()
                logger.opt(exception=not isinstance(exc, ReaperError)).error(f"job {name} failed: {exc}")
            finally:
                busy.release()

        return run_guarded

    def in_background(self, name: str, job: Callable[[], object]) -> Callable[[], None]:
        """Return a callable that runs the guarded ``job`` in a thread, so the loop keeps ticking."""
        guarded = self.guarded(name, job)

        def start() -> None:
            thread = threading.Thread(target=guarded, name=f"reaper-{name}", daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

        return start

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds in all for the jobs running in background threads."""
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(deadline - time.monotonic(), 0))
