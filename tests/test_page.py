"""The status page at /: what a person sees, in a real headless Chromium, and nothing unescaped."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import schedule
from prometheus_client import CollectorRegistry

from helpers import NOW, Tasks, ago
from reaper.daemon import Daemon
from reaper.demo import ensure_demo_database
from reaper.http import MetricsServer, build_app
from reaper.metrics import ReaperMetrics
from reaper.page import render_status_page
from reaper.settings import load_settings

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run must install it")
        pytest.skip("chromium is not installed on this machine")
    return found


def page_daemon(settings_url: str) -> tuple[Daemon, ReaperMetrics]:
    settings = load_settings({"database_url": settings_url})
    metrics = ReaperMetrics(CollectorRegistry(), "test")
    return Daemon(settings, lambda: settings, metrics, schedule.Scheduler(), clock=lambda: NOW), metrics


@pytest.fixture
def demo_page(tmp_path: Path) -> Iterator[str]:
    """The status page of a daemon on the demo database, after one poll and one dry run."""
    database = tmp_path / "demo.sqlite3"
    ensure_demo_database(database, NOW)
    daemon, metrics = page_daemon(f"sqlite:///{database}")
    daemon.poll()
    daemon.run_policies(dry_run=True)

    def page() -> str:
        return render_status_page(metrics.snapshot, "processing_tasks", shadow=False)

    server = MetricsServer(build_app(metrics.registry, daemon.healthy, daemon.ready, page), "127.0.0.1", 0)
    server.start()
    yield f"http://127.0.0.1:{server.port}/"
    server.stop()


@pytest.mark.external
def test_a_person_sees_statuses_zombies_runs_and_thresholds_in_chromium(demo_page: str, tmp_path: Path) -> None:
    browser = chromium()
    profile = tmp_path / "profile"
    done = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", demo_page],
        capture_output=True, text=True, timeout=120,
    )
    dom = done.stdout
    assert "Tasks by status" in dom, done.stderr[-2000:]
    assert 'aria-label="tasks by status"' in dom and 'aria-label="zombies by task type"' in dom
    assert "<td>success</td><td class=\"n\">14850</td>" in dom
    assert "<td>extract_audio</td>" in dom and "Zombies by task type" in dom
    assert "<td>dry_run</td><td>success</td>" in dom  # the dry run just made
    assert "<td>running_timeout</td><td class=\"n\">24.0 h</td>" in dom
    for link in ("/metrics", "/healthz", "/readyz"):
        assert f'href="{link}"' in dom
    shot = tmp_path / "page.png"
    subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=900,1200", f"--screenshot={shot}",
         demo_page],
        capture_output=True, timeout=120,
    )
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one


def test_values_from_the_table_are_escaped(tasks: Tasks, database_url: str) -> None:
    tasks.add("running", task_type="<script>alert(1)</script>", started_at=ago(hours=30))
    daemon, metrics = page_daemon(database_url)
    daemon.poll()
    html = render_status_page(metrics.snapshot, "processing_tasks", shadow=True)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "shadow mode" in html


def test_the_page_says_when_the_database_has_not_answered() -> None:
    daemon, metrics = page_daemon("mysql+pymysql://u:Sup3rSecretPw@127.0.0.1:1/x")
    daemon.poll()
    html = render_status_page(metrics.snapshot, "processing_tasks", shadow=False)
    assert 'class="down"' in html and "No statistics yet" in html and "Sup3rSecretPw" not in html
