"""The alerting rules, their promtool unit tests, the runbook, the PrometheusRule and the Alertmanager example."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "alerts" / "reaper-rules.yml"
RULE_TESTS = ROOT / "alerts" / "reaper-rules.test.yml"
ALERTMANAGER_CONFIG = ROOT / "alerts" / "alertmanager.yml"
PROMETHEUS_RULE = ROOT / "deploy" / "kubernetes" / "prometheusrule.yaml"
RUNBOOK = ROOT / "docs" / "runbook.md"
DASHBOARD = ROOT / "grafana" / "reaper-dashboard.json"
# mixin/config.libsonnet's runbookUrlBase and grafanaUrl, as the shipped files are rendered.
RUNBOOK_URL = "docs/runbook.md"
GRAFANA_URL = "http://127.0.0.1:3000"
SEVERITIES = {"warning", "critical"}
# The one alert that needs a person now: many tasks wait, and nothing fails them either.
CRITICAL = {"ReaperZombiePendingTasksPersisting"}

# A metric name that is not part of an identifier or a quoted label value, with its matchers if any.
REAPER_SELECTOR = re.compile(r'(?<![\w"])(?P<name>reaper_\w+|process_\w+|up)\b\s*(?P<matchers>\{[^}]*\})?')
FOR_LINE = re.compile(r"^\s+for: \d+[smhdwy]\s*$", re.MULTILINE)


@cache
def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _alerts() -> list[dict[str, Any]]:
    return [rule for group in _yaml(RULES)["groups"] for rule in group["rules"] if "alert" in rule]


def _tool(*names: str) -> str:
    """The path of the first of ``names`` installed; skip (fail under CI) when none is."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    message = f"{' or '.join(names)} is not installed (Debian packages prometheus, prometheus-alertmanager)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _run(*command: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _runbook_headings() -> dict[int, list[str]]:
    """The runbook's headings by level."""
    headings: dict[int, list[str]] = {}
    for hashes, text in re.findall(r"^(#{1,6})\s+(.+?)\s*$", RUNBOOK.read_text(encoding="utf-8"), re.MULTILINE):
        headings.setdefault(len(hashes), []).append(text)
    return headings


def _selectors_without_the_job(expr: str) -> list[str]:
    """The selectors of reaper, process and ``up`` metrics in ``expr`` that do not say job="reaper"."""
    return [
        match.group(0).strip()
        for match in REAPER_SELECTOR.finditer(expr)
        if 'job="reaper"' not in re.sub(r"\s", "", match.group("matchers") or "")
    ]


@pytest.mark.external
def test_promtool_accepts_the_rules() -> None:
    result = _run(_tool("promtool"), "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.external
def test_the_rule_unit_tests_pass() -> None:
    # rule_files in the test file are relative to it.
    result = _run(_tool("promtool"), "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases = [case for test in _yaml(RULE_TESTS)["tests"] for case in test.get("alert_rule_test", [])]
    for name in (alert["alert"] for alert in _alerts()):
        own = [case for case in cases if case["alertname"] == name]
        assert any(case.get("exp_alerts") for case in own), f"{name}: no test where it fires"
        assert any(not case.get("exp_alerts") for case in own), f"{name}: no test where it stays quiet"


def test_every_alert_is_silent_when_the_reaper_is_healthy() -> None:
    healthy = _yaml(RULE_TESTS)["tests"][0]
    quiet = {case["alertname"] for case in healthy["alert_rule_test"] if case["exp_alerts"] == []}
    assert quiet == {alert["alert"] for alert in _alerts()}


def test_every_alert_is_a_warning_or_critical() -> None:
    for alert in _alerts():
        assert alert["labels"]["severity"] in SEVERITIES, alert["alert"]


def test_only_what_needs_a_person_now_is_critical() -> None:
    assert {alert["alert"] for alert in _alerts() if alert["labels"]["severity"] == "critical"} == CRITICAL
    (persisting,) = [alert for alert in _alerts() if alert["alert"] == "ReaperZombiePendingTasksPersisting"]
    assert re.search(r"\} >= \d+$", persisting["expr"]), persisting["expr"]  # a count of zombies, not a single one


def test_every_description_of_a_table_level_alert_names_the_table() -> None:
    for alert in _alerts():
        if "reaper_" in alert["expr"]:
            assert "{{ $labels.table }}" in alert["annotations"]["description"], alert["alert"]


def test_every_summary_is_fixed_and_every_description_is_templated() -> None:
    for alert in _alerts():
        annotations = alert["annotations"]
        assert annotations["summary"] and "{{" not in annotations["summary"], alert["alert"]
        if not alert["expr"].startswith("absent("):  # no series, no labels: it names the selector instead
            assert "{{" in annotations["description"], alert["alert"]


def test_every_alert_links_to_a_runbook_section() -> None:
    anchors = {_github_anchor(heading) for level in _runbook_headings().values() for heading in level}
    assert (ROOT / RUNBOOK_URL).is_file()  # the default base is the runbook shipped here
    for alert in _alerts():
        anchor = alert["alert"].lower()
        assert alert["annotations"]["runbook_url"] == f"{RUNBOOK_URL}#{anchor}"
        assert anchor in anchors, f"docs/runbook.md has no heading {alert['alert']}"


def test_every_alert_links_to_the_dashboard_with_its_job_instance_and_table() -> None:
    uid = json.loads(DASHBOARD.read_text(encoding="utf-8"))["uid"]
    for alert in _alerts():
        url = alert["annotations"]["dashboard_url"]
        assert url.startswith(f"{GRAFANA_URL}/d/{uid}"), alert["alert"]
        if "reaper_" in alert["expr"]:
            for label in ("job", "instance", "table"):
                assert f"var-{label}={{{{ $labels.{label} | urlquery }}}}" in url, (alert["alert"], label)


def test_every_runbook_section_is_an_alert() -> None:
    assert sorted(_runbook_headings()[2]) == sorted(alert["alert"] for alert in _alerts())


def test_every_selector_names_the_reaper_job() -> None:
    for alert in _alerts():
        assert _selectors_without_the_job(alert["expr"]) == [], alert["alert"]


def test_the_selector_check_spots_a_selector_without_the_job() -> None:
    expr = 'time() - (reaper_x{job="reaper"} > process_start_time_seconds) or up{ job = "reaper" } unless up'
    assert _selectors_without_the_job(expr) == ["process_start_time_seconds", "up"]
    assert _selectors_without_the_job('sum(reaper_tasks{status="pending"}) by (job)') == [
        'reaper_tasks{status="pending"}'
    ]


def test_every_alert_waits_with_a_plain_for_line() -> None:
    # The end-to-end test rewrites each `for:` line to make the alerts fire quickly.
    alerts = _alerts()
    assert all("for" in alert for alert in alerts)
    assert len(FOR_LINE.findall(RULES.read_text(encoding="utf-8"))) == len(alerts)


def test_the_prometheus_rule_has_the_same_groups_as_the_rules_file() -> None:
    resource = _yaml(PROMETHEUS_RULE)
    assert (resource["apiVersion"], resource["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert resource["metadata"]["name"] == "reaper"
    assert resource["spec"]["groups"] == _yaml(RULES)["groups"]


@pytest.mark.external
def test_alertmanager_accepts_the_example_configuration() -> None:
    tool = _tool("amtool", "prometheus-alertmanager", "alertmanager")
    if Path(tool).name == "amtool":
        result = _run(tool, "check-config", str(ALERTMANAGER_CONFIG))
        assert result.returncode == 0, result.stdout + result.stderr
    else:
        _assert_alertmanager_starts(tool, ALERTMANAGER_CONFIG)


@pytest.mark.external
def test_alertmanager_pages_for_critical_and_chats_for_warning() -> None:
    amtool = _tool("amtool")
    for severity, receiver in (("critical", "pager"), ("warning", "chat")):
        result = _run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
                      f"--verify.receivers={receiver}", f"severity={severity}", "alertname=ReaperDown")
        assert result.returncode == 0, result.stdout + result.stderr


def _assert_alertmanager_starts(binary: str, config: Path) -> None:
    """Start Alertmanager on a free local port with ``config``; it must come up, not exit."""
    with tempfile.TemporaryDirectory() as storage, tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.path={storage}",
             "--web.listen-address=127.0.0.1:0", "--cluster.listen-address="],
            stdout=log, stderr=subprocess.STDOUT, text=True,
        )
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and process.poll() is None:
                log.seek(0)
                if 'msg="Listening on"' in log.read():
                    return
                time.sleep(0.1)
            log.seek(0)
            pytest.fail(f"Alertmanager did not start with {config.name}:\n{log.read()}")
        finally:
            process.terminate()
            process.wait(timeout=10)
