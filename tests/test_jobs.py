"""The daemon's guarded jobs: a job still running is skipped, not started twice."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from test_metrics import samples, value

from reaper.daemon.jobs import Jobs
from reaper.daemon.metrics import ReaperMetrics


def test_a_job_still_running_is_skipped_not_started_twice() -> None:
    registry = CollectorRegistry()
    metrics = ReaperMetrics(registry, "test")
    metrics.set_table("processing_tasks")
    jobs = Jobs(metrics)
    inner: list[str] = []

    def reentrant() -> None:
        inner.append("outer")
        jobs.guarded("slow", lambda: inner.append("inner"))()

    jobs.guarded("slow", reentrant)()
    assert inner == ["outer"]
    assert value(samples(registry), "reaper_jobs_skipped_total", scheduled_job="slow") == 1
