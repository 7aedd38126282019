"""The status page at /: an on-call view, what a person sees in a real headless Chromium, nothing unescaped."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schedule
from prometheus_client import CollectorRegistry

from helpers import NOW, Tasks, ago
from reaper.daemon.http import MetricsServer, build_app
from reaper.daemon.loop import Daemon
from reaper.daemon.metrics import ReaperMetrics
from reaper.daemon.page import PageContext, render_status_page
from reaper.daemon.page_style import STRIP_EDGE, ZOMBIE_RED
from reaper.daemon.snapshot import RunRecord, Snapshot
from reaper.database.demo import ensure_demo_database
from reaper.inspect.stats import StaleSummary, Stats
from reaper.settings.model import load_settings

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
CONTEXT = PageContext("processing_tasks", NOW.timestamp(), version="9.8.7")


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


def stale(count: int = 0, oldest_hours: float | None = None, ids: list[Any] | None = None, **own: str) -> StaleSummary:
    """Zombies of one status, all of task type extract_audio."""
    return StaleSummary(
        "24 h", dict(own), count, {"extract_audio": count} if count else {},
        None if oldest_hours is None else oldest_hours * 3600, sample_ids=ids or [],
    )


def snapshot(running: StaleSummary | None = None, pending: StaleSummary | None = None, **changes: Any) -> Snapshot:
    counts = {("success", "download"): 14850, ("pending", "download"): 12, ("running", "extract_audio"): 3}
    stats = Stats(NOW, "processing_tasks", counts, 150, {"running": running or stale(), "pending": pending or stale()},
                  totals_at=NOW)
    values: dict[str, Any] = {
        "stats": stats, "database_up": True, "last_poll_success": NOW.timestamp() - 5,
        "thresholds_seconds": {"running_timeout": 86400.0, "pending_timeout": 7200.0},
    }
    return Snapshot(**(values | changes))


def summary_of(html: str) -> str:
    found = re.search(r'<section id="summary".*?</section>', html)
    assert found, "no summary strip"
    return found.group(0)


# --- the page's content ----------------------------------------------------------------------------------


def test_the_summary_strip_comes_first_with_the_database_zombies_oldest_and_cleanups() -> None:
    html = render_status_page(snapshot(), CONTEXT)
    summary = summary_of(html)
    assert html.index('id="summary"') < html.index('id="zombies"') < html.index('id="runs"')
    for title in ("Database", "Zombies", "Oldest running", "Oldest pending", "Last cleanup", "Next cleanup"):
        assert f"<h2>{title}</h2>" in summary
    assert '<div class="tile ok"><h2>Database</h2><p class="big">up</p><p>last poll 5 s ago</p>' in summary


def test_zombies_make_a_red_tile_with_the_running_and_pending_counts_and_the_task_types() -> None:
    running = StaleSummary("24 h", {}, 3, {"extract_audio": 2, "download": 1}, 40 * 3600.0, [7, 9])
    html = render_status_page(snapshot(running, stale(1_250, 5)), CONTEXT)
    summary = summary_of(html)
    assert '<div class="tile zombies present"><h2>Zombies</h2><p class="big">1,253</p>' in summary
    assert "3 running · 1,250 pending<br>extract_audio 1,252 · download 1" in summary
    assert '<td>extract_audio</td><td class="n zombie">2</td><td class="n zombie">1,250</td>' in html


def test_without_zombies_the_zombie_tile_is_not_red() -> None:
    html = render_status_page(snapshot(), CONTEXT)
    assert '<div class="tile zombies ok"><h2>Zombies</h2><p class="big">0</p>' in html
    assert "zombies present" not in html and "No zombies." in html and "Zombie ids" not in html


def test_the_oldest_running_and_pending_tasks_are_shown_against_their_limits() -> None:
    summary = summary_of(render_status_page(snapshot(stale(1, 79.2), stale(0, 0.5)), CONTEXT))
    assert '<div class="tile alarm"><h2>Oldest running</h2><p class="big">3.3 d</p><p>over its limit of 24 h' in summary
    assert '<div class="tile ok"><h2>Oldest pending</h2><p class="big">30 min</p><p>within its limit of 24 h' in summary
    own = summary_of(render_status_page(snapshot(stale(0, None, download="1 h")), CONTEXT))
    assert "no running task; limit of 24 h (default; 1 task type has its own)" in own


def test_zombie_ids_come_with_the_explain_command_that_shows_why() -> None:
    running = stale(7, 30, ids=[14657, 14927, 15001, 15002, 15003])
    pending = stale(1, 5, ids=["a b'<c>"])
    html = render_status_page(snapshot(running, pending), CONTEXT)
    ids = " ".join(f"<code>{number}</code>" for number in (14657, 14927, 15001, 15002, 15003))
    assert f"running: {ids} …</p>" in html and "<code>reaper --explain 14657</code>" in html
    assert "pending: <code>a b&#x27;&lt;c&gt;</code></p>" in html  # escaped, however odd the id
    only_pending = render_status_page(snapshot(None, pending), CONTEXT)
    assert "<code>reaper --explain &#x27;a b&#x27;&quot;&#x27;&quot;&#x27;&lt;c&gt;&#x27;</code>" in only_pending


def test_counts_have_thousands_separators_and_a_small_count_still_has_a_visible_bar() -> None:
    html = render_status_page(snapshot(), CONTEXT)
    assert "14,865 tasks; 150 created in the last 24 hours." in html
    assert '<td>success</td><td class="n">14,850</td><td class="n">99.9 %</td>' in html
    assert '<span class="bar" style="width:100.00%">' in html
    assert '<td>running</td><td class="n">3</td><td class="n">0.0 %</td><td class="barcell"><span class="bar"' in html
    assert '<td>revoked</td><td class="n">0</td><td class="n">0.0 %</td><td class="barcell"></td>' in html
    assert "min-width: 3px" in html and "Bars are to scale" in html


def test_the_last_cleanup_and_the_next_one_are_in_the_summary() -> None:
    runs = (
        RunRecord(NOW.timestamp() - 600, "dry_run", "success", 9, 0),
        RunRecord(NOW.timestamp() - 3600, "cleanup", "success", 12_000, 11_990, 10, 3.2, origin="scheduled"),
    )
    due = PageContext("processing_tasks", NOW.timestamp(), next_cleanup=NOW.timestamp() + 14 * 3600)
    summary = summary_of(render_status_page(snapshot(recent_runs=runs), due))
    assert ('<h2>Last cleanup</h2><p class="big">success</p><p>11,990 changed, 10 skipped, 60 min ago '
            "(audit log: scheduled)</p>") in summary
    assert '<h2>Next cleanup</h2><p class="big">in 14.0 h</p><p>2026-11-30 02:00:00 UTC</p>' in summary
    shadow = summary_of(render_status_page(snapshot(recent_runs=runs), PageContext("t", NOW.timestamp(), True)))
    assert '<h2>Last dry run</h2><p class="big">success</p><p>9 would change' in shadow


def test_a_failed_cleanup_is_an_alarm_and_none_yet_is_said() -> None:
    failed = (RunRecord(NOW.timestamp() - 60, "cleanup", "failure"),)
    assert '<div class="tile alarm"><h2>Last cleanup</h2><p class="big">failure</p>' in render_status_page(
        snapshot(recent_runs=failed), CONTEXT
    )
    assert '<h2>Last cleanup</h2><p class="big">none yet</p>' in render_status_page(snapshot(), CONTEXT)


def test_the_page_is_one_document_with_a_viewport_and_the_version_and_no_script_or_external_asset() -> None:
    html = render_status_page(snapshot(), CONTEXT)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "reaper 9.8.7" in html
    assert "<script" not in html and "src=" not in html and "@import" not in html and "url(" not in html
    assert re.findall(r'href="([^"]*)"', html) == ["/metrics", "/healthz", "/readyz"]
    assert "grid-template-columns: minmax(0, 1fr) minmax(0, 1fr)" in html  # two columns on a wide screen


def test_the_next_cleanup_is_the_time_the_schedule_has_for_it(tmp_path: Path) -> None:
    settings = load_settings({"database_url": f"sqlite:///{tmp_path / 'x.db'}", "cleanup_at": "02:30"})
    daemon = Daemon(settings, lambda: settings, ReaperMetrics(CollectorRegistry(), "t"), schedule.Scheduler())
    assert daemon.next_cleanup() is None
    daemon.schedule_jobs()
    due = daemon.next_cleanup()
    assert due is not None and due.tzinfo is not None and (due.hour, due.minute) == (2, 30)
    assert timedelta(0) < due - datetime.now(UTC) <= timedelta(days=1)  # schedule reads the real clock


def test_values_from_the_table_are_escaped(tasks: Tasks, database_url: str) -> None:
    tasks.add("running", task_type="<script>alert(1)</script>", started_at=ago(hours=30))
    daemon, metrics = page_daemon(database_url)
    daemon.poll()
    html = render_status_page(metrics.snapshot, PageContext("<b>jobs</b>", NOW.timestamp(), shadow=True))
    assert "<script>" not in html and "<b>" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 2  # the zombie tile and the zombie table
    assert "shadow mode" in html


def test_the_page_says_when_the_database_has_not_answered() -> None:
    daemon, metrics = page_daemon("mysql+pymysql://u:Sup3rSecretPw@127.0.0.1:1/x")
    daemon.poll()
    html = render_status_page(metrics.snapshot, CONTEXT)
    assert '<div class="tile alarm"><h2>Database</h2><p class="big">down</p>' in html
    assert "No statistics yet" in html and "Sup3rSecretPw" not in html


# --- in a real browser -----------------------------------------------------------------------------------


@pytest.fixture
def demo_page(tmp_path: Path) -> Iterator[str]:
    """The status page of a daemon on the demo database, after one poll and one dry run."""
    database = tmp_path / "demo.sqlite3"
    ensure_demo_database(database, NOW)
    daemon, metrics = page_daemon(f"sqlite:///{database}")
    daemon.poll()
    daemon.run_pass(dry_run=True)

    def page() -> str:
        return render_status_page(metrics.snapshot, CONTEXT)

    server = MetricsServer(build_app(metrics.registry, daemon.healthy, daemon.ready, page), "127.0.0.1", 0)
    server.start()
    yield f"http://127.0.0.1:{server.port}/"
    server.stop()


@pytest.mark.external
def test_a_person_sees_the_summary_zombie_ids_statuses_and_runs_in_chromium(demo_page: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", demo_page],
        capture_output=True, text=True, timeout=120,
    )
    dom = done.stdout
    assert '<section id="summary"' in dom, done.stderr[-2000:]
    assert '<div class="tile zombies present"><h2>Zombies</h2><p class="big">7</p><p>2 running · 5 pending' in dom
    assert '<td>success</td><td class="n">14,850</td>' in dom and "15,420 tasks" in dom
    assert re.search(r"<code>reaper --explain \d+</code>", dom)
    assert "<td>dry_run</td><td>success</td>" in dom  # the dry run just made
    assert "<td>running_timeout</td><td>*</td><td class=\"n\">24.0 h</td>" in dom


def strip_edge_row(image: Any) -> int | None:
    """The first row of pixels that is mostly the colour of the line under the summary strip."""
    edge = tuple(int(STRIP_EDGE[i:i + 2], 16) for i in (1, 3, 5))
    width, height = image.size
    for y in range(height):
        colours = dict((colour, count) for count, colour in image.crop((0, y, width, y + 1)).getcolors(width))
        if colours.get(edge, 0) > 0.9 * width:
            return y
    return None


def zombie_red_pixels(image: Any, rows: int) -> int:
    red = tuple(int(ZOMBIE_RED[i:i + 2], 16) for i in (1, 3, 5))
    top = image.crop((0, 0, image.size[0], rows))
    return sum(count for count, colour in top.getcolors(top.size[0] * rows) if colour == red)


def screenshot(tmp_path: Path, name: str, *flags: str) -> Any:
    from PIL import Image  # only the browser tests need Pillow

    png = tmp_path / f"{name}.png"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "screenshot.py"), str(png), "--chromium", chromium(), *flags],
        capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return Image.open(png).convert("RGB")


@pytest.mark.external
@pytest.mark.slow
def test_the_screenshot_shows_the_summary_strip_in_the_first_600_px_and_zombies_in_red(tmp_path: Path) -> None:
    with_zombies = screenshot(tmp_path, "zombies")
    edge = strip_edge_row(with_zombies)
    assert edge is not None and edge < 600, f"the summary strip ends at {edge} px"
    assert zombie_red_pixels(with_zombies, edge) > 5000  # the zombie tile, filled red
    cleaned = screenshot(tmp_path, "cleaned", "--cleanup")
    assert zombie_red_pixels(cleaned, cleaned.size[1]) == 0  # no zombie left: no red anywhere
    narrow = screenshot(tmp_path, "narrow", "--width", "412", "--height", "900")
    edge = strip_edge_row(narrow)
    assert edge is not None and edge < 600 and zombie_red_pixels(narrow, edge) > 5000  # a phone's screen too


# --- the daemon itself -----------------------------------------------------------------------------------


def serve_demo(folder: Path) -> tuple[subprocess.Popen[str], str]:
    """Start ``reaper --demo`` in ``folder``; return the process and the base URL it says it serves."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REAPER_")} | {"REAPER_METRICS_PORT": "0"}
    process = subprocess.Popen([sys.executable, "-m", "reaper", "--demo"], cwd=folder, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"metrics on (http://[\d.]+:\d+)/metrics", process.stdout.readline())
        if found:
            return process, found.group(1)
    process.kill()
    raise AssertionError("the daemon never said where it serves")


@pytest.mark.slow
def test_a_restarted_daemon_shows_the_cleanups_of_the_audit_log_its_version_and_the_next_cleanup(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REAPER_")}
    once = subprocess.run([sys.executable, "-m", "reaper", "--demo", "--once", "--yes"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert once.returncode == 0, once.stderr[-2000:]
    process, base = serve_demo(tmp_path)
    try:
        with urllib.request.urlopen(base + "/", timeout=10) as response:
            html = response.read().decode()
    finally:
        process.kill()  # its shutdown is tested elsewhere; SIGTERM waits on an Event, which libfaketime can stall
        process.wait(timeout=15)
    from reaper import __version__

    assert f"reaper {__version__}" in html and '<h2>Next cleanup</h2><p class="big">in ' in html
    assert '<h2>Last cleanup</h2><p class="big">success</p>' in html and "(audit log: once)" in html
