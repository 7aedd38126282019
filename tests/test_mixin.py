"""The monitoring mixin: the shipped rules and dashboard are what it renders, and settings of one's own work."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RENDER = ROOT / "mixin" / "render.py"
SHIPPED = (
    Path("alerts/reaper-rules.yml"),
    Path("grafana/reaper-dashboard.json"),
    Path("deploy/kubernetes/prometheusrule.yaml"),
)
NOT_SOURCES = {".git", "__pycache__", ".venv", "venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", "build"}


@pytest.fixture(scope="module")
def renderer() -> ModuleType:
    """mixin/render.py, run in this process (its main() is the command line)."""
    spec = importlib.util.spec_from_file_location("mixin_render", RENDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def render(renderer: ModuleType, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run ``python mixin/render.py ARGS``; return its exit code, its output and its errors."""

    def run(*args: str) -> tuple[int, str, str]:
        code = renderer.main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def rendered_rules(folder: Path) -> list[dict[str, Any]]:
    groups = yaml.safe_load((folder / SHIPPED[0]).read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_shipped_rules_dashboard_and_prometheus_rule_are_what_the_mixin_renders(
    tmp_path: Path, render: Any
) -> None:
    code, _, errors = render("--output-dir", str(tmp_path))
    assert code == 0, errors
    for path in SHIPPED:
        assert (tmp_path / path).read_text(encoding="utf-8") == (ROOT / path).read_text(encoding="utf-8"), (
            f"{path} is not what mixin/ renders: edit mixin/ and run python mixin/render.py"
        )


def test_the_check_passes_on_the_rendered_files_and_fails_on_one_edited_by_hand(tmp_path: Path, render: Any) -> None:
    for path in SHIPPED:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, tmp_path / path)
    assert render("--check", "--output-dir", str(tmp_path))[0] == 0
    rules = tmp_path / SHIPPED[0]
    rules.write_text(rules.read_text(encoding="utf-8").replace("for: 15m", "for: 20m", 1), encoding="utf-8")
    code, output, _ = render("--check", "--output-dir", str(tmp_path))
    assert code == 1 and "alerts/reaper-rules.yml" in output and "+        for: 15m" in output


def test_settings_of_ones_own_change_the_selector_the_links_and_a_threshold(tmp_path: Path, render: Any) -> None:
    config = tmp_path / "mine.jsonnet"
    config.write_text(
        "{ selector: 'job=\"tasks-reaper\"', runbookUrlBase: 'wiki/reaper-runbook', grafanaUrl: 'grafana.internal',"
        " alerts: { ReaperPendingBacklog: { count: 5000 }, ReaperDown: { severity: 'critical' } } }",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    code, _, errors = render("--config", str(config), "--output-dir", str(out))
    assert code == 0, errors
    rules = {rule["alert"]: rule for rule in rendered_rules(out)}
    for rule in rules.values():
        assert 'job="tasks-reaper"' in rule["expr"] and 'job="reaper"' not in rule["expr"], rule["alert"]
        assert rule["annotations"]["runbook_url"] == f"wiki/reaper-runbook#{rule['alert'].lower()}"
        assert rule["annotations"]["dashboard_url"].startswith("grafana.internal/d/reaper-overview")
    assert rules["ReaperPendingBacklog"]["expr"].endswith("> 5000")
    assert rules["ReaperPendingBacklog"]["for"] == "15m"  # what the file leaves alone keeps its default
    assert rules["ReaperDown"]["labels"]["severity"] == "critical"
    assert rules["ReaperDatabaseDown"]["labels"]["severity"] == "warning"
    dashboard = json.loads((out / SHIPPED[1]).read_text(encoding="utf-8"))
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    assert queries and all('job="tasks-reaper"' in query for query in queries)
    resource = yaml.safe_load((out / SHIPPED[2]).read_text(encoding="utf-8"))
    assert [rule["expr"] for group in resource["spec"]["groups"] for rule in group["rules"]] == [
        rule["expr"] for rule in rules.values()
    ]


def test_a_misspelt_setting_is_refused_in_one_line_and_nothing_is_written(tmp_path: Path, render: Any) -> None:
    config = tmp_path / "mine.jsonnet"
    config.write_text("{ alerts: { ReaperPendingBacklog: { cuont: 5000 } } }", encoding="utf-8")
    code, _, errors = render("--config", str(config), "--output-dir", str(tmp_path / "out"))
    assert code == 2
    assert errors.strip().splitlines() == [
        f"render.py: error: {config}: unknown setting alerts.ReaperPendingBacklog.cuont (see mixin/config.libsonnet)"
    ]
    assert not (tmp_path / "out").exists()


def test_a_settings_file_that_is_not_jsonnet_is_refused_in_one_line(tmp_path: Path, render: Any) -> None:
    config = tmp_path / "mine.jsonnet"
    config.write_text("{ selector: ", encoding="utf-8")
    code, _, errors = render("--config", str(config), "--output-dir", str(tmp_path / "out"))
    assert code == 2 and len(errors.strip().splitlines()) == 1 and str(config) in errors


def test_no_file_points_at_a_repository_that_does_not_exist() -> None:
    needle = "reaper" + "-project"  # spelt apart so that this file does not match itself
    sources = [path for path in ROOT.rglob("*")
               if path.is_file() and not NOT_SOURCES & set(path.relative_to(ROOT).parts)]
    assert ROOT / "mixin" / "config.libsonnet" in sources
    found = [str(path.relative_to(ROOT)) for path in sources if needle in path.read_text(errors="ignore")]
    assert found == []
