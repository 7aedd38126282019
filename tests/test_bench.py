"""Smoke test of the purge benchmark (bench/purge.py), so that it cannot rot.

The benchmark itself is not part of the test suite: this runs it on a tiny SQLite table, as a
subprocess with a time limit, and checks that it finishes and prints its figures and goals.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import BACKENDS, require_server

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "purge.py"


@pytest.mark.slow
def test_the_purge_benchmark_runs_on_a_tiny_sqlite_table_and_prints_its_figures_and_goals(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("REAPER_")}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--rows", "3000", "--databases", "sqlite", "--skip-pt-archiver", "--quick",
         "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    def figures(method: str) -> list[str]:  # rows of the figures table: database, method, deleted, seconds, ...
        return [line for line in lines if re.match(rf"sqlite +{re.escape(method)} +[\d,]+ +[\d.]+ ", line)]

    bare, reaper = figures("bare DELETE"), figures("reaper --once")
    assert len(bare) == 1 and len(reaper) == 1, result.stdout
    assert "rows/s" in result.stdout and "vs bare DELETE" in result.stdout
    # both methods purged the same rows, about half of the table
    deleted = {int(line.split()[3].replace(",", "")) for line in bare + reaper}  # database, method (2 words), deleted
    assert len(deleted) == 1 and 1300 < deleted.pop() < 1700, result.stdout
    goals = [line for line in lines if line.startswith("GOAL ")]
    assert len(goals) == 6, result.stdout
    assert all(" met" in goal or "MISSED" in goal or "not measured" in goal for goal in goals)
    # the statistics goal is about the daemon's per-poll refresh, and the full recount is shown beside it
    assert any("per-poll refresh" in goal and "full recount" in goal for goal in goals), result.stdout
    assert re.search(
        r"sqlite: statistics: the daemon's per-poll refresh .* [\d.]+ s with; a full recount", result.stdout
    )


@pytest.mark.slow
@pytest.mark.server
def test_the_purge_benchmark_runs_on_a_tiny_mariadb_table_and_times_the_rows_until_innodb_removed_them(
    tmp_path: Path,
) -> None:
    require_server("mariadb")
    env = {key: value for key, value in os.environ.items() if not key.startswith("REAPER_")}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--rows", "3000", "--databases", "mariadb", "--skip-pt-archiver", "--quick",
         "--methods", "bare,reaper", "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    purged = re.findall(r"^mariadb +(bare DELETE|reaper --once) +([\d,]+) +[\d.]+ .* ([\d.]+) s +[\d,]+ +[\d.]+x$",
                        result.stdout, re.MULTILINE)
    assert [method for method, *_ in purged] == ["bare DELETE", "reaper --once"], result.stdout
    assert len({deleted for _, deleted, _ in purged}) == 1
    goals = [line for line in result.stdout.splitlines() if line.startswith("GOAL ")]
    assert any("counted until InnoDB has removed the rows" in goal for goal in goals), result.stdout
    rate = next(goal for goal in goals if "of the bare DELETE's rate:" in goal)
    # at 3,000 rows reaper's start-up dominates, so the goal is missed, and the line gives the CPU side
    assert "MISSED" in rate and re.search(r"cores were \d+% busy .* server used [\d.]+ s of CPU", rate), rate


CEILING = SCRIPT.parent / "batch_ceiling.py"


def strategies_run(stdout: str) -> list[tuple[str, str, str, str]]:
    """(strategy, rows deleted, ratio, transactions) per line of batch_ceiling.py's output."""
    return re.findall(r"^(\S+)(?: \d+)? +([\d,]+) rows .* ([\d.]+)x of the first bare DELETE, ([\d,]+) transactions$",
                      stdout, re.MULTILINE)


@pytest.mark.slow
@pytest.mark.server
def test_the_batch_ceiling_benchmark_runs_every_strategy_on_a_tiny_mariadb_table(tmp_path: Path) -> None:
    require_server("mariadb")
    result = subprocess.run(
        [sys.executable, str(CEILING), "--rows", "3000", "--batch-size", "100"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = strategies_run(result.stdout)
    assert [name for name, *_ in rows] == ["bare", "in-list", "range", "pk-chunks", "pk+return", "bare"], result.stdout
    assert len({deleted for _, deleted, _, _ in rows}) == 1  # every strategy purged the same rows
    assert all(int(count.replace(",", "")) > 1 for name, _, _, count in rows if name != "bare")


@pytest.mark.slow
def test_the_batch_ceiling_benchmark_walks_the_key_at_each_batch_size_on_sqlite(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"  # the temporary directory the script sees
    scratch.mkdir()
    result = subprocess.run(
        [sys.executable, str(CEILING), "--rows", "3000", "--batch-size", "100", "--walk-sizes", "1000",
         "--database", "sqlite"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, stdin=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = strategies_run(result.stdout)
    assert [name for name, *_ in rows] == ["bare", "pk-chunks", "pk-chunks", "bare"], result.stdout
    assert len({deleted for _, deleted, _, _ in rows}) == 1 and rows[0][1] != "0"
    assert [int(count.replace(",", "")) for *_, count in rows] == [1, 30, 3, 1]  # 3,000 ids in 100s, then 1,000s
    folder = Path(re.findall(r"^working files in (.+), removed at the end$", result.stdout, re.MULTILINE)[0])
    assert folder.parent == scratch and not folder.exists()  # in the temporary directory, and removed at the end


@pytest.mark.slow
@pytest.mark.server
def test_the_purge_lag_benchmark_times_each_method_to_its_commit_and_until_innodb_removed_the_rows(
    tmp_path: Path,
) -> None:
    require_server("mariadb")
    scratch = tmp_path / "tmp"  # the temporary directory the script sees
    scratch.mkdir()
    result = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "purge_lag.py"), "--rows", "3000", "--rounds", "1",
         "--methods", "bare,reaper,reaper-held"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, stdin=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(r"^round 1 (\S+) +([\d,]+) rows  last commit +([\d.]+) s .* removed by InnoDB +([\d.]+) s",
                      result.stdout, re.MULTILINE)
    assert [method for method, *_ in rows] == ["bare", "reaper", "reaper-held"], result.stdout
    assert len({deleted for _, deleted, _, _ in rows}) == 1 and rows[0][1] != "0"
    assert all(float(removed) >= float(commit) for _, _, commit, removed in rows)  # removal follows the commit
    cpu = re.findall(
        r"^  cpu to the commit: server ([\d.]+) s \+ reaper ([\d.]+) s .*; server until removed ([\d.]+) s",
        result.stdout,
        re.MULTILINE,
    )
    assert len(cpu) == 3, result.stdout
    assert float(cpu[0][1]) == 0 < float(cpu[1][1])  # the bare DELETE runs no reaper; reaper's run is counted
    assert float(cpu[0][2]) > float(cpu[0][0])  # InnoDB's purge works for the bare DELETE after its commit
    assert list(tmp_path.iterdir()) == [scratch]  # reaper's audit log stays in the benchmark's own folder
    folder = Path(re.findall(r"^working files in (.+), removed at the end$", result.stdout, re.MULTILINE)[0])
    assert folder.parent == scratch and not folder.exists()  # in the temporary directory, and removed at the end


@pytest.mark.slow
def test_the_app_latency_benchmark_compares_the_application_idle_during_a_bare_delete_and_during_reaper(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "app_latency.py"), "--database", "sqlite", "--rows", "3000",
         "--cpu-seconds", "0.5", "--idle-updates", "1500", "bare", "", "--sleep 0.01", "cpu:1"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    labels = re.findall(r"^(.+?) +(?:[\d.]+ s )? +(?:p50 |no update finished)", result.stdout, re.MULTILINE)
    assert labels == ["idle", "bare", "reaper (defaults)", "--sleep 0.01", "cpu:1 (no purge)", "idle, again"], (
        result.stdout)
    lines = re.findall(r"^(.+?) +(?:[\d.]+ s )? +p50 +([\d.]+) +p99 +([\d.]+) .* \(([\d,]+) updates\)(.*)$",
                       result.stdout, re.MULTILINE)
    idle = [line for line in lines if line[0] in ("idle", "idle, again")]
    assert [int(line[3].replace(",", "")) for line in idle] == [1500, 1500]  # both idle samples are complete
    if Path("/proc/stat").exists():  # the host's share of the CPU beside each idle sample
        assert all(re.fullmatch(r"; host took \d+ % of the CPU", line[4]) for line in idle), result.stdout
    assert lines[-2][0] == "cpu:1 (no purge)" and int(lines[-2][3].replace(",", "")) > 0
    assert all(float(p50) <= float(p99) for _, p50, p99, _, _ in lines)
    lower = min(float(line[2]) for line in idle)
    assert re.search(rf"^idle p99: {lower:.2f} ms, the lower of the two$", result.stdout, re.MULTILINE)
    assert list(tmp_path.iterdir()) == []  # reaper's audit log stays in the benchmark's own folder


@pytest.mark.slow
def test_the_plans_benchmark_times_a_dry_run_and_a_purge_against_the_plain_statements_on_sqlite(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "plans.py"), "--rows", "2000", "--databases", "sqlite",
         "--index-sets", "pk,recommended", "--shapes", "scattered3", "--json-out", str(tmp_path / "f.json")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads((tmp_path / "f.json").read_text())
    cells = {(f["index_set"], f["measure"]): f for f in figures}
    assert set(cells) == {("pk", "dry"), ("pk", "purge"), ("recommended", "dry"), ("recommended", "purge")}
    walked = cells[("pk", "purge")]["plan"]
    assert walked.startswith("running pk walk") and "success pk walk" in walked
    assert "success ix_bench_2" in cells[("recommended", "purge")]["plan"]
    assert all(f["rows_changed"] == 60 and f["reaper_seconds"] > 0 and f["plain_seconds"] > 0 for f in figures)
    line = r"^\| sqlite \| 2,000 \| scattered3 \| pk \| purge \| [\d.]+ s \| [\d.]+ s \| [\d.]+x"
    assert re.search(line, result.stdout, re.M)


@pytest.mark.slow
def test_the_plans_benchmark_purges_a_fifth_of_the_rows_when_asked_and_refuses_a_shape_it_does_not_know(
    tmp_path: Path,
) -> None:
    plans = [sys.executable, str(SCRIPT.parent / "plans.py"), "--rows", "2000", "--databases", "sqlite"]
    result = subprocess.run(
        [*plans, "--index-sets", "recommended", "--shapes", "purge20", "--json-out", str(tmp_path / "f.json")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    dry, purge = json.loads((tmp_path / "f.json").read_text())
    assert dry["rows_changed"] == purge["rows_changed"] == 400
    assert "success ix_bench_2" in purge["plan"]
    unknown = subprocess.run([*plans, "--shapes", "purge80,purge50"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "--shapes: unknown purge50" in unknown.stderr


@pytest.mark.slow
def test_the_plans_benchmark_repeats_each_side_and_passes_its_write_flags_to_reaper(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "plans.py"), "--rows", "2000", "--databases", "sqlite",
         "--index-sets", "pk", "--shapes", "scattered3", "--repeat", "2",
         "--write-flags", "--success-retention 3650", "--json-out", str(tmp_path / "f.json")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    dry, purge = json.loads((tmp_path / "f.json").read_text())
    assert all(len(f["reaper_runs"]) == len(f["plain_runs"]) == 2 for f in (dry, purge))
    assert dry["rows_changed"] == 60  # the dry run keeps the default thresholds
    assert purge["rows_changed"] < 60  # the real run kept every success: ten years of retention


@pytest.mark.slow
@pytest.mark.server
def test_the_app_latency_benchmark_throttles_on_history_list_lengths_chosen_from_the_idle_level(
    tmp_path: Path,
) -> None:
    if "mariadb" not in BACKENDS:
        pytest.skip("MariaDB is not in TEST_DATABASES")
    require_server("mariadb")
    result = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "app_latency.py"), "--database", "mariadb", "--rows", "3000",
         "--idle-updates", "1500", "", "throttle", "throttle@4"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = re.search(r"^  history_list_length while the application ran alone: up to ([\d,]+); throttle N = ([\d,]+)$",
                      result.stdout, re.MULTILINE)
    assert found, result.stdout
    peak, n = (int(value.replace(",", "")) for value in found.groups())
    assert n == max(2 * peak, 20)
    n4 = max(4 * peak, 20)
    labels = re.findall(r"^(.+?) +[\d.]+ s +(?:p50 |no update finished)", result.stdout, re.MULTILINE)
    purges = [label for label in labels if not label.endswith(" then until removed")]
    assert purges == ["reaper (defaults)", f"throttle N={n}", f"throttle N={n4}"], result.stdout
    rates = re.findall(r"^  [\d,]+ rows: [\d,]+ rows/s to the last commit, [\d,]+ rows/s until removed"
                       r"(; host took \d+ % of the CPU)?$",
                       result.stdout, re.MULTILINE)
    assert len(rates) == 3, result.stdout
    curve = re.findall(r"^(.+?) +[\d.]+ +([\d.]+) +[\d,]+ +([\d.]+)$", result.stdout, re.MULTILINE)
    assert [label for label, _, _ in curve] == purges, result.stdout
    assert curve[0][2] == "1.00"  # the rates are against reaper with its defaults
    goal = [line for line in result.stdout.splitlines() if line.startswith("GOAL ")]
    assert [line.split(":")[0] for line in goal] == [f"GOAL throttle N={n}", f"GOAL throttle N={n4}"], result.stdout
    assert all(line.endswith(("met", "MISSED")) for line in goal)
    assert list(tmp_path.iterdir()) == []


def test_the_host_steal_share_is_the_stolen_ticks_over_all_ticks_between_two_readings(tmp_path: Path) -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import steal
    finally:
        sys.path.remove(str(SCRIPT.parent))
    stat = tmp_path / "stat"
    stat.write_text("cpu  1000 0 200 5000 10 0 5 100 0 0\ncpu0 500 0 100 2500 5 0 2 50 0 0\n")
    meter = steal.StealMeter(stat)
    # 400 more ticks in all, 100 of them stolen
    stat.write_text("cpu  1200 0 250 5050 10 0 5 200 0 0\ncpu0 600 0 125 2525 5 0 2 100 0 0\n")
    assert meter.share() == pytest.approx(0.25)
    assert steal.said(meter.share()) == "host took 25 % of the CPU"
    assert steal.StealMeter(tmp_path / "missing").share() is None
    assert steal.said(None) == ""
