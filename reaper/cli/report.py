"""Human text for a pass's result."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from reaper.policy.policies import DEFAULT_RULE, Policy, Rule
from reaper.results import PolicyResult, RunResult, done_text


def _rule_lines(result: PolicyResult, dry_run: bool) -> list[str]:
    """A line per task type that has its own rule, and one for the others."""
    if len(result.rules) < 2:
        return []
    lines = []
    for key, rule in result.rules.items():
        name = "other types" if key == DEFAULT_RULE else key
        beat = f", heartbeat {rule.heartbeat_threshold}" if rule.heartbeat_threshold else ""
        done = done_text(rule.done, rule.action, rule.affected, dry_run)
        lines.append(f"  {'':<18}   {name}: older than {rule.threshold}{beat}: {rule.matched} matched, {done}")
    return lines


def _policy_lines(name: str, result: PolicyResult, dry_run: bool) -> list[str]:
    done = done_text(result.done, result.action, result.affected, dry_run)
    ids = ", ".join(map(str, result.sample_ids))
    sample = f" (ids {ids}{', ...' if result.matched > len(result.sample_ids) else ''})" if ids else ""
    beat = result.rules[DEFAULT_RULE].heartbeat_threshold if DEFAULT_RULE in result.rules else None
    threshold = f"{result.threshold} (heartbeat {beat})" if beat else result.threshold
    lines = [f"  {name:<18} {result.status} older than {threshold:<7}: {result.matched:>7} matched, {done}{sample}"]
    lines += _rule_lines(result, dry_run)
    for reason, count in result.skip_reasons.items():
        lines.append(f"  {'':<18} {count} skipped: {reason}")
    changed_under_us = result.matched - result.affected - result.skipped
    if not dry_run and changed_under_us > 0:
        lines.append(f"  {'':<18} {changed_under_us} changed under us and were left alone")
    if result.stop_reason:
        lines.append(f"  {'':<18} not finished: {result.stop_reason}")
    return lines


def _paused(run: RunResult) -> str:
    """How long the pass paused for load or lag, and for what: ``, 3.0 s of it paused: Threads_running 3.0 s``."""
    if not run.throttled_seconds:
        return ""
    reasons = ", ".join(f"{reason} {seconds:.1f} s" for reason, seconds in run.throttle.items())
    return f", {run.throttled_seconds:.1f} s of it paused: {reasons}"


def render_run(run: RunResult, target: str) -> str:
    """Return the summary a person reads after ``--once`` or ``--force-status``."""
    title = "DRY RUN, nothing written" if run.dry_run else "cleanup"
    lines = [f"reaper {title} at {run.now:%Y-%m-%d %H:%M:%S} UTC on {target}"]
    for name, result in run.policies.items():
        lines += _policy_lines(name, result, run.dry_run)
    if run.stopped_early:
        lines.append(f"Stopped early ({run.stop_reason}): the rest will be done by the next run.")
    if run.dry_run:
        lines.append(f"{run.matched} rows would be changed ({run.duration_seconds:.2f} s).")
    else:
        skipped = f", {run.skipped} skipped" if run.skipped else ""
        lines.append(f"{run.affected} rows changed{skipped} ({run.duration_seconds:.2f} s{_paused(run)}).")
    return "\n".join(lines)


def _beside(entry: dict[str, Any], key: str, added: str, value: Any) -> dict[str, Any]:
    """``entry`` with ``added`` right after ``key``, so that a person reading the JSON finds them together."""
    result: dict[str, Any] = {}
    for name, item in entry.items():
        result[name] = item
        if name == key:
            result[added] = value
    return result


def _seconds(age: timedelta | None) -> float | None:
    return None if age is None else age.total_seconds()


def _rule_json(entry: dict[str, Any], rule: Rule | None) -> dict[str, Any]:
    if rule is None:
        return entry
    entry = _beside(entry, "threshold", "threshold_seconds", _seconds(rule.max_age))
    return _beside(entry, "heartbeat_threshold", "heartbeat_threshold_seconds", _seconds(rule.heartbeat_max_age))


def run_document(run: RunResult, policies: Sequence[Policy]) -> dict[str, Any]:
    """The ``--json`` document of a pass: the run's own, with each threshold also in seconds."""
    document = run.to_json()
    for policy in policies:
        entry = document["policies"].get(policy.name)
        if entry is None:  # not reached: the pass stopped before it
            continue
        rules = {rule.key: rule for rule in policy.rules}
        entry = _beside(entry, "threshold", "threshold_seconds", policy.max_age.total_seconds())
        entry["rules"] = {key: _rule_json(value, rules.get(key)) for key, value in entry["rules"].items()}
        document["policies"][policy.name] = entry
    return document
