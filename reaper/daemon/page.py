"""The daemon's status page at ``/``: an on-call view in plain HTML, no script, no external assets.

A summary strip on top answers what a person just paged asks first: is the database up, are there
zombies (a red tile, by status and task type), how old the oldest running and pending tasks are
against their limits, how the last cleanup went and when the next one runs. Below it, in two
columns on a wide screen: the zombies with a few ids for ``reaper --explain``, the tasks by status
with bars to scale, the recent runs and the thresholds in force.

It is drawn from the snapshot behind the metrics and never queries the database; it refreshes
itself every 30 seconds. Every value that comes from the table (task types, unknown statuses, ids)
is escaped.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from reaper.daemon.page_style import STYLE
from reaper.daemon.snapshot import ZOMBIE_POLICIES, RunRecord, Snapshot
from reaper.formats import AT_A_GLANCE, duration_text
from reaper.inspect.stats import StaleSummary, Stats

TYPES_IN_STRIP = 4  # task types named in the zombie tile; the zombie table lists them all


@dataclass(frozen=True)
class PageContext:
    """What the page shows besides the snapshot: whose page it is, and the moment and schedule it is drawn at."""

    table: str
    now: float  # Unix time of the rendering
    shadow: bool = False
    version: str = ""
    next_cleanup: float | None = None  # Unix time the scheduled cleanup is due; None when none is scheduled


def _n(count: int) -> str:
    return f"{count:,}"


def _when(timestamp: float) -> str:
    if not timestamp:
        return "never"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _relative(timestamp: float, now: float) -> str:
    """``in 3.5 h`` or ``12 min ago``."""
    delta = timestamp - now
    span = duration_text(abs(delta), AT_A_GLANCE)
    return f"in {span}" if delta > 0 else f"{span} ago"


def _tile(title: str, value: str, detail: str, state: str = "") -> str:
    """One tile of the summary strip; ``value`` and ``detail`` are HTML already escaped."""
    return f'<div class="tile {state}"><h2>{title}</h2><p class="big">{value}</p><p>{detail}</p></div>'


def _database_tile(snapshot: Snapshot, now: float) -> str:
    if snapshot.database_up:
        return _tile("Database", "up", f"last poll {_relative(snapshot.last_poll_success, now)}", "ok")
    worked = _relative(snapshot.last_poll_success, now) if snapshot.last_poll_success else "never"
    return _tile("Database", "down", f"last poll that worked: {worked}", "alarm")


def _zombie_types(stale: Mapping[str, StaleSummary]) -> dict[str, int]:
    """Zombies per task type, running and pending together, most first."""
    totals: Counter[str] = Counter()
    for summary in stale.values():
        totals.update(summary.by_type)
    return dict(sorted(totals.items(), key=lambda item: (-item[1], item[0])))


def _zombie_tile(stats: Stats | None) -> str:
    if stats is None:
        return _tile("Zombies", "?", "no statistics yet", "zombies")
    total = sum(summary.count for summary in stats.stale.values())
    split = " · ".join(f"{_n(summary.count)} {escape(status)}" for status, summary in stats.stale.items())
    if not total:
        return _tile("Zombies", "0", split, "zombies ok")
    types = list(_zombie_types(stats.stale).items())
    named = " · ".join(f"{escape(task_type)} {_n(count)}" for task_type, count in types[:TYPES_IN_STRIP])
    more = f" · {len(types) - TYPES_IN_STRIP} more types" if len(types) > TYPES_IN_STRIP else ""
    return _tile("Zombies", _n(total), f"{split}<br>{named}{more}", "zombies present")


def _oldest_tile(status: str, summary: StaleSummary | None, limit_seconds: float | None) -> str:
    title = f"Oldest {escape(status)}"
    if summary is None:
        return _tile(title, "–", "no policy watches it")
    threshold = f"limit of {escape(summary.threshold)}"
    if summary.thresholds_by_type:
        own = len(summary.thresholds_by_type)
        threshold += f" (default; {own} task type{' has its' if own == 1 else 's have their'} own)"
    age = summary.oldest_age_seconds
    if age is None:
        return _tile(title, "none", f"no {escape(status)} task; {threshold}", "ok")
    if limit_seconds is not None and age > limit_seconds:
        return _tile(title, duration_text(age, AT_A_GLANCE), f"over its {threshold}", "alarm")
    return _tile(title, duration_text(age, AT_A_GLANCE), f"within its {threshold}", "ok")


def _last_run_tile(runs: tuple[RunRecord, ...], shadow: bool, now: float) -> str:
    mode, title = ("dry_run", "Last dry run") if shadow else ("cleanup", "Last cleanup")
    run = next((run for run in runs if run.mode == mode), None)
    if run is None:
        return _tile(title, "none yet", "since the daemon started, and none in the audit log")
    state = {"success": "ok", "stopped": "warn", "locked": "warn"}.get(run.outcome, "alarm")
    done = f"{_n(run.matched)} would change" if run.mode == "dry_run" else f"{_n(run.affected)} changed"
    origin = f" (audit log: {escape(run.origin)})" if run.origin else ""
    detail = f"{done}, {_n(run.skipped)} skipped, {_relative(run.at, now)}{origin}"
    return _tile(title, escape(run.outcome), detail, state)


def _next_cleanup_tile(context: PageContext) -> str:
    if context.next_cleanup is None:
        return _tile("Next cleanup", "not scheduled", "the schedule has not started")
    detail = _when(context.next_cleanup) + ("; a dry run: shadow mode" if context.shadow else "")
    return _tile("Next cleanup", _relative(context.next_cleanup, context.now), detail)


def _summary_strip(snapshot: Snapshot, context: PageContext) -> str:
    stats = snapshot.stats
    oldest = []
    if stats is not None:
        limits = snapshot.thresholds_seconds
        oldest = [_oldest_tile(s, stats.stale.get(s), limits.get(name)) for s, name in ZOMBIE_POLICIES.items()]
    tiles = [
        _database_tile(snapshot, context.now), _zombie_tile(stats), *oldest,
        _last_run_tile(snapshot.recent_runs, context.shadow, context.now), _next_cleanup_tile(context),
    ]
    return f'<section id="summary" aria-label="summary">{"".join(tiles)}</section>'


def _count_cell(count: int) -> str:
    return f'<td class="n{" zombie" if count else ""}">{_n(count)}</td>'


def _explain_hint(stale: Mapping[str, StaleSummary]) -> str:
    lines = [
        f'<p class="ids">{escape(status)}: {" ".join(f"<code>{escape(str(i))}</code>" for i in summary.sample_ids)}'
        f"{' …' if summary.count > len(summary.sample_ids) else ''}</p>"
        for status, summary in stale.items()
        if summary.sample_ids
    ]
    if not lines:
        return ""
    first = next(summary.sample_ids[0] for summary in stale.values() if summary.sample_ids)
    command = escape(f"reaper --explain {shlex.quote(str(first))}")
    return (
        f"<h3>Zombie ids, smallest first</h3>{''.join(lines)}"
        f'<p class="hint">Why is a task a zombie, and what will the next run do to it? <code>{command}</code> '
        "with the daemon's settings (its environment, <code>.env</code>, <code>--config</code>; "
        "<code>--demo</code> on the demo database). It only reads.</p>"
    )


def _zombie_section(stats: Stats) -> str:
    summaries = [stats.stale.get(status) for status in ZOMBIE_POLICIES]  # a column per status that has zombies
    rows = "".join(
        f"<tr><td>{escape(task_type)}</td>"
        + "".join(_count_cell(summary.by_type.get(task_type, 0) if summary else 0) for summary in summaries)
        + "</tr>"
        for task_type in _zombie_types(stats.stale)
    ) or f'<tr><td colspan="{len(summaries) + 1}">No zombies.</td></tr>'
    heads = "".join(f'<th class="n">stale {escape(status)}</th>' for status in ZOMBIE_POLICIES)
    return (
        f'<section><h2>Zombies by task type</h2><table id="zombies"><tr><th>task type</th>{heads}</tr>{rows}</table>'
        f"{_explain_hint(stats.stale)}</section>"
    )


def _bar(count: int, largest: int) -> str:
    if not count:
        return ""
    return f'<span class="bar" style="width:{100 * count / largest:.2f}%"></span>'


def _status_section(stats: Stats, now: float) -> str:
    counts, total = stats.by_status, stats.total
    largest = max(counts.values(), default=0) or 1
    rows = "".join(
        f'<tr><td>{escape(name)}</td><td class="n">{_n(count)}</td>'
        f'<td class="n">{100 * count / (total or 1):.1f} %</td><td class="barcell">{_bar(count, largest)}</td></tr>'
        for name, count in counts.items()
    )
    counted = stats.totals_at.timestamp()
    as_of = "" if counted >= stats.now.timestamp() else f" Finished statuses as counted {_relative(counted, now)}."
    return (
        f"<section><h2>Tasks by status</h2><p>{_n(total)} tasks; {_n(stats.created_last_24h)} created in the "
        f"last 24 hours.{as_of}</p>"
        '<table id="statuses"><tr><th>status</th><th class="n">tasks</th><th class="n">share</th><th>'
        f"</th></tr>{rows}</table>"
        '<p class="note">Bars are to scale, the largest count full width; a count too small to see keeps a '
        "3 px bar, its number beside it.</p></section>"
    )


def _outcome_cell(outcome: str) -> str:
    # Locked is no alarm: another replica held the run lock and did the work.
    return f'<td class="zombie">{escape(outcome)}</td>' if outcome == "failure" else f"<td>{escape(outcome)}</td>"


def _runs_section(runs: tuple[RunRecord, ...]) -> str:
    rows = "".join(
        f"<tr><td>{datetime.fromtimestamp(run.at, UTC):%Y-%m-%d %H:%M:%S}</td><td>{escape(run.mode)}"
        f"{f' <span class=note>(audit log: {escape(run.origin)})</span>' if run.origin else ''}</td>"
        f"{_outcome_cell(run.outcome)}"
        f'<td class="n">{_n(run.matched)}</td><td class="n">{_n(run.affected)}</td>'
        f'<td class="n">{_n(run.skipped)}</td><td class="n">{run.duration_seconds:.2f} s</td></tr>'
        for run in runs
    ) or '<tr><td colspan="7">No run since the daemon started, and none in the audit log.</td></tr>'
    header = (
        '<tr><th>when (UTC)</th><th>mode</th><th>outcome</th><th class="n">matched</th>'
        '<th class="n">changed</th><th class="n">skipped</th><th class="n">took</th></tr>'
    )
    return (
        f'<section><h2>Recent runs</h2><table id="runs">{header}{rows}</table><p class="note">Newest first. '
        "Runs from before the daemon started come from the audit log, which keeps only the runs that "
        "changed rows.</p></section>"
    )


def _thresholds_section(snapshot: Snapshot) -> str:
    defaults = [(escape(name), "*", seconds) for name, seconds in snapshot.thresholds_seconds.items()]
    own = [
        (escape(name), escape(task_type), seconds)
        for (task_type, name), seconds in snapshot.type_thresholds_seconds.items()
    ]
    rows = "".join(
        f'<tr><td>{name}</td><td>{task_type}</td><td class="n">{duration_text(seconds, AT_A_GLANCE)}</td></tr>'
        for name, task_type, seconds in defaults + sorted(own)
    )
    return (
        '<section><h2>Thresholds in force</h2><table id="thresholds"><tr><th>policy</th><th>task type</th>'
        f'<th class="n">older than</th></tr>{rows}</table></section>'
    )


def _details(snapshot: Snapshot, now: float) -> str:
    stats = snapshot.stats
    # Zombies first; the runs' table grows to ten rows, so the statuses go with it and the thresholds left.
    if stats is None:
        left = "<section><h2>No statistics yet</h2><p>No statistics yet: the database has not answered.</p></section>"
        right = ""
    else:
        left, right = _zombie_section(stats), _status_section(stats, now)
    left += _thresholds_section(snapshot)
    right += _runs_section(snapshot.recent_runs)
    return f'<main><div class="column">{left}</div><div class="column">{right}</div></main>'


def _header(context: PageContext) -> str:
    version = f' <span class="note">reaper {escape(context.version)}</span>' if context.version else ""
    shadow = ' <span class="badge">shadow mode: dry runs only</span>' if context.shadow else ""
    links = "".join(f'<a href="{path}">{path}</a>' for path in ("/metrics", "/healthz", "/readyz"))
    return f"<header><h1>reaper · {escape(context.table)}</h1>{version}{shadow}<nav>{links}</nav></header>"


def render_status_page(snapshot: Snapshot, context: PageContext) -> str:
    """Return the status page's HTML for the latest snapshot."""
    body = _header(context) + _summary_strip(snapshot, context) + _details(snapshot, context.now)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="refresh" content="30"><title>reaper: {escape(context.table)}</title>'
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )

