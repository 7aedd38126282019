"""Human text for a pass's result."""

from __future__ import annotations

from reaper.reap import PolicyResult, RunResult


def _policy_lines(name: str, result: PolicyResult, dry_run: bool) -> list[str]:
    verb = {"fail": "failed", "delete": "deleted"}[result.action]
    done = f"would be {verb}" if dry_run else f"{result.affected} {verb}"
    ids = ", ".join(map(str, result.sample_ids))
    sample = f" (ids {ids}{', ...' if result.matched > len(result.sample_ids) else ''})" if ids else ""
    lines = [f"  {name:<18} {result.status} older than {result.threshold:<7}: {result.matched:>7} matched, {done}{sample}"]
    for reason, count in result.skip_reasons.items():
        lines.append(f"  {'':<18} {count} skipped: {reason}")
    changed_under_us = result.matched - result.affected - result.skipped
    if not dry_run and changed_under_us > 0:
        lines.append(f"  {'':<18} {changed_under_us} changed under us and were left alone")
    if result.stop_reason:
        lines.append(f"  {'':<18} not finished: {result.stop_reason}")
    return lines


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
        lines.append(f"{run.affected} rows changed{skipped} ({run.duration_seconds:.2f} s).")
    return "\n".join(lines)
