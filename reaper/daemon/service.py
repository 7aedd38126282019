"""The daemon's wiring: its own metrics registry, the HTTP server, the scheduler and the daemon itself.

Kept apart from the command line so that one-shot runs never import prometheus-client, the HTTP
server or ``schedule`` (about 30 ms of every ``reaper --once`` start-up).
"""

from __future__ import annotations

from collections.abc import Callable

import schedule
from loguru import logger
from prometheus_client import CollectorRegistry, ProcessCollector, disable_created_metrics

from reaper import __version__
from reaper.daemon.history import audit_runs
from reaper.daemon.http import MetricsServer, TlsFiles, build_app
from reaper.daemon.loop import Daemon
from reaper.daemon.metrics import ReaperMetrics
from reaper.daemon.page import PageContext, render_status_page
from reaper.settings.model import Settings


def run_daemon(settings: Settings, reload_settings: Callable[[], Settings], shadow: bool) -> int:
    """Serve the metrics and run the schedule until a signal stops the daemon; return its exit code."""
    # *_created series only double what dashboards read; most exporters drop them.
    disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated in prometheus_client
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # process_start_time_seconds: the alert rules need the uptime
    metrics = ReaperMetrics(registry, __version__, settings.metrics.metrics_max_task_types)
    # The page's recent runs survive a restart: those that changed rows are in the audit log.
    metrics.restore_runs(audit_runs(settings.safety.audit_log, settings.task_table.table, settings.safe_database_url))
    daemon = Daemon(settings, reload_settings, metrics, schedule.Scheduler(), shadow=shadow)
    daemon.open_database()  # a mistake no wait mends (no such file, table, login): exit 2 now, as a one-shot run would

    def status_page() -> str:
        due = daemon.next_cleanup()
        table, now = daemon.settings.task_table.table, daemon.clock().timestamp()
        context = PageContext(table, now, shadow, __version__, due.timestamp() if due else None)
        return render_status_page(metrics.snapshot, context)

    tls, http = None, settings.metrics
    if http.metrics_certfile and http.metrics_keyfile:
        tls = TlsFiles(http.metrics_certfile, http.metrics_keyfile, http.metrics_client_cafile)
    app = build_app(registry, daemon.healthy, daemon.ready, status_page)
    server = MetricsServer(app, http.metrics_host, http.metrics_port, tls)
    daemon.install_signal_handlers()

    def serve() -> None:
        server.start()
        logger.info(
            f"reaper {__version__} {'in shadow mode (dry runs only) ' if shadow else ''}watching "
            f"{settings.task_table.table} at {settings.safe_database_url}; metrics on "
            f"{server.scheme}://{server.host}:{server.port}/metrics"
        )

    try:
        return daemon.run(on_ready=serve)
    finally:
        server.stop()
