"""Human text for a pass's result."""

from __future__ import annotations

from reaper.reap import RunResult


def render_run(run: RunResult, target: str) -> str:
    """Return the summary a person reads after ``--once`` or ``--force-status``."""
    title = "DRY RUN, nothing written" if run.dry_run else "cleanup"
    lines = [f"reaper {title} at {run.now:%Y-%m-%d %H:%M:%S} UTC on {target}"]
    for name, result in run.policies.items():
        verb = {"fail": "failed", "delete": "deleted"}[result.action]
        done = f"would be {verb}" if run.dry_run else f"{result.affected} {verb}"
        ids = ", ".join(map(str, result.sample_ids))
        sample = f" (ids {ids}{', ...' if result.matched > len(result.sample_ids) else ''})" if ids else ""
        lines.append(
            f"  {name:<18} {result.status} older than {result.threshold:<7}: {result.matched:>7} matched, {done}{sample}"
        )
        if not run.dry_run and result.affected < result.matched:
            lines.append(f"  {'':<18} {result.matched - result.affected} changed under us and were left alone")
    if run.stopped_early:
        lines.append("Stopped early on request: the policies not shown, or not finished, will run next time.")
    if run.dry_run:
        lines.append(f"{run.matched} rows would be changed ({run.duration_seconds:.2f} s).")
    else:
        lines.append(f"{run.affected} rows changed ({run.duration_seconds:.2f} s).")
    return "\n".join(lines)
