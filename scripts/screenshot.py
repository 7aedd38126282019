"""Take a screenshot of the daemon's status page on the demo database, in headless Chromium.

    python scripts/screenshot.py docs/images/status-page.png

makes the demo database in a temporary folder, has a daemon poll it and make a dry run as it would
after start-up (with --cleanup, a real cleanup and a poll after it too, so the page shows no
zombies and the cleanup's result), serves its status page on 127.0.0.1 at a free port, and has
Chromium (``chromium`` on the PATH, or --chromium) draw it at --width x --height pixels. The page
is the one the daemon serves: same snapshot, same rendering; nothing outside the temporary folder
is written but the PNG. The clock is the real one, as the demo's rows are dated from it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import schedule
from prometheus_client import CollectorRegistry

from reaper import __version__
from reaper.daemon.http import MetricsServer, build_app
from reaper.daemon.loop import Daemon
from reaper.daemon.metrics import ReaperMetrics
from reaper.daemon.page import PageContext, render_status_page
from reaper.database.demo import ensure_demo_database
from reaper.settings.model import load_settings

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--force-color-profile=srgb", "--force-device-scale-factor=1",
]


def demo_daemon(folder: Path, cleanup: bool) -> Daemon:
    """A daemon on a fresh demo database in ``folder``, after the poll and runs the page should show."""
    database = folder / "demo.sqlite3"
    settings = load_settings({"database_url": f"sqlite:///{database}", "audit_log": str(folder / "audit.jsonl")})
    daemon = Daemon(settings, lambda: settings, ReaperMetrics(CollectorRegistry(), __version__), schedule.Scheduler())
    ensure_demo_database(database, daemon.clock())
    daemon.schedule_jobs()  # the jobs only, for the next cleanup's time: no loop runs them
    daemon.poll()
    daemon.run_pass(dry_run=True)
    if cleanup:
        daemon.run_pass(dry_run=False)
        daemon.poll()
    return daemon


def screenshot(daemon: Daemon, output: Path, size: tuple[int, int], browser: str, folder: Path) -> None:
    """Serve ``daemon``'s status page and have Chromium draw it into ``output``."""

    def page() -> str:
        due = daemon.next_cleanup()
        context = PageContext(
            daemon.settings.table, daemon.clock().timestamp(), False, __version__, due.timestamp() if due else None
        )
        return render_status_page(daemon.metrics.snapshot, context)

    server = MetricsServer(build_app(daemon.metrics.registry, daemon.healthy, daemon.ready, page), "127.0.0.1", 0)
    server.start()
    try:
        command = [
            browser, *CHROMIUM_FLAGS, f"--user-data-dir={folder / 'profile'}", f"--window-size={size[0]},{size[1]}",
            f"--screenshot={output.resolve()}", f"http://127.0.0.1:{server.port}/",
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        server.stop()
    if done.returncode != 0 or not output.exists():
        sys.exit(f"screenshot.py: chromium failed ({done.returncode}): {done.stderr.strip()[-500:]}")


def main() -> None:
    """Parse the command line and take the screenshot."""
    parser = argparse.ArgumentParser(description="Screenshot the status page on the demo database.")
    parser.add_argument("output", type=Path, help="the PNG to write, e.g. docs/images/status-page.png")
    parser.add_argument("--width", type=int, default=1280, help="window width in pixels (default 1280)")
    parser.add_argument("--height", type=int, default=780, help="window height in pixels (default 780)")
    parser.add_argument("--cleanup", action="store_true", help="run a real cleanup first: no zombies left")
    parser.add_argument("--chromium", help="the Chromium binary (default: chromium on the PATH)")
    args = parser.parse_args()
    browser = args.chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("screenshot.py: chromium not found; install it (Debian: apt-get install chromium) or pass --chromium")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="reaper-screenshot-") as folder:
        daemon = demo_daemon(Path(folder), args.cleanup)
        screenshot(daemon, args.output, (args.width, args.height), browser, Path(folder))
    print(f"wrote {args.output} ({args.output.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
