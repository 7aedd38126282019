"""The daemon's status page at ``/``, for people without Grafana: plain HTML, no script, no assets.

It is drawn from the same snapshot as the metrics (it never queries the database) and refreshes
itself every 30 seconds. Every value that comes from the table (task types, unknown statuses) is
escaped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from reaper.metrics import RunRecord, Snapshot
from reaper.stats import Stats

BAR_WIDTH = 240
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; } td, th { padding: 3px 10px; text-align: left; }
th { border-bottom: 1px solid #999; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.up { color: #17692c; font-weight: bold; } .down { color: #b00020; font-weight: bold; }
.zombie { color: #b00020; font-weight: bold; } nav a { margin-right: 1em; }
"""


def _when(timestamp: float) -> str:
    if not timestamp:
        return "never"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    hours = seconds / 3600
    return f"{seconds:.0f} s" if seconds < 120 else (f"{hours:.1f} h" if hours < 72 else f"{hours / 24:.1f} d")


def _bar_chart(counts: dict[str, int], label: str) -> str:
    """An inline SVG bar chart, one bar per key."""
    largest = max(counts.values(), default=0) or 1
    rows = []
    for index, (name, count) in enumerate(counts.items()):
        width = round(BAR_WIDTH * count / largest)
        y = index * 22
        rows.append(
            f'<text x="0" y="{y + 15}">{escape(name)}</text>'
            f'<rect x="90" y="{y + 3}" width="{width}" height="16" fill="#4a78b5"><title>{count}</title></rect>'
            f'<text x="{96 + width}" y="{y + 15}">{count}</text>'
        )
    height = 22 * len(counts)
    return (
        f'<svg role="img" aria-label="{escape(label)}" width="{BAR_WIDTH + 160}" height="{height}" '
        f'font-size="12">{"".join(rows)}</svg>'
    )


def _status_section(stats: Stats) -> str:
    counts = stats.by_status
    rows = "".join(f'<tr><td>{escape(name)}</td><td class="n">{count}</td></tr>' for name, count in counts.items())
    return (
        f"<h2>Tasks by status</h2><p>{stats.total} tasks; {stats.created_last_24h} created in the last 24 hours.</p>"
        f'<table id="statuses"><tr><th>status</th><th>tasks</th></tr>{rows}</table>'
        f'{_bar_chart(counts, "tasks by status")}'
    )


def _count_cell(count: int) -> str:
    return f'<td class="n{" zombie" if count else ""}">{count}</td>'


def _zombie_section(stats: Stats) -> str:
    running, pending = stats.stale.get("running"), stats.stale.get("pending")
    types = sorted(set(running.by_type if running else {}) | set(pending.by_type if pending else {}))
    rows = "".join(
        f"<tr><td>{escape(kind)}</td>{_count_cell(running.by_type.get(kind, 0) if running else 0)}"
        f"{_count_cell(pending.by_type.get(kind, 0) if pending else 0)}</tr>"
        for kind in types
    ) or '<tr><td colspan="3">No zombies.</td></tr>'
    oldest = " ".join(
        f"Oldest {status}: {_duration(summary.oldest_age_seconds)}."
        for status, summary in stats.stale.items()
        if summary.oldest_age_seconds is not None
    )
    totals = {
        kind: (running.by_type.get(kind, 0) if running else 0) + (pending.by_type.get(kind, 0) if pending else 0)
        for kind in types
    }
    return (
        "<h2>Zombies by task type</h2>"
        f'<table id="zombies"><tr><th>task type</th><th>stale running</th><th>stale pending</th></tr>{rows}</table>'
        f"{_bar_chart(totals, 'zombies by task type') if totals else ''}<p>{escape(oldest)}</p>"
    )


def _runs_section(runs: tuple[RunRecord, ...]) -> str:
    rows = "".join(
        f"<tr><td>{_when(run.at)}</td><td>{escape(run.mode)}</td><td>{escape(run.outcome)}</td>"
        f'<td class="n">{run.matched}</td><td class="n">{run.affected}</td><td class="n">{run.skipped}</td>'
        f'<td class="n">{run.duration_seconds:.2f} s</td></tr>'
        for run in runs
    ) or '<tr><td colspan="7">No run since the daemon started.</td></tr>'
    header = (
        "<tr><th>when</th><th>mode</th><th>outcome</th><th>matched</th>"
        "<th>changed</th><th>skipped</th><th>took</th></tr>"
    )
    return f'<h2>Last runs</h2><table id="runs">{header}{rows}</table>'


def _thresholds_section(thresholds: dict[str, float]) -> str:
    rows = "".join(
        f'<tr><td>{escape(name)}</td><td class="n">{_duration(seconds)}</td></tr>'
        for name, seconds in thresholds.items()
    )
    return (
        '<h2>Thresholds in force</h2><table id="thresholds"><tr><th>policy</th><th>older than</th></tr>'
        f"{rows}</table>"
    )


def render_status_page(snapshot: Snapshot, table: str, shadow: bool) -> str:
    """Return the status page's HTML for the latest snapshot."""
    state = '<span class="up">up</span>' if snapshot.database_up else '<span class="down">down</span>'
    mode = " (shadow mode: dry runs only)" if shadow else ""
    body = [
        f"<h1>reaper: {escape(table)}{mode}</h1>",
        '<nav><a href="/metrics">/metrics</a><a href="/healthz">/healthz</a><a href="/readyz">/readyz</a></nav>',
        f"<p>Database {state}; last poll that worked: {_when(snapshot.last_poll_success)}; "
        f"last successful cleanup: {_when(snapshot.last_cleanup_success)}.</p>",
    ]
    if snapshot.stats is not None:
        body += [_status_section(snapshot.stats), _zombie_section(snapshot.stats)]
    else:
        body.append("<p>No statistics yet: the database has not answered.</p>")
    body += [_runs_section(snapshot.recent_runs), _thresholds_section(dict(snapshot.thresholds_seconds))]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="refresh" content="30"><title>reaper status</title>'
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>"
    )
