"""End to end: the daemon on the demo database, a real Prometheus scraping it, a real Alertmanager.

Every expression of the Grafana dashboard and of the alert rules is evaluated through Prometheus's
HTTP API (each must be valid and name only metrics the daemon really exports), and with the
rules' ``for:`` durations shortened a zombie alert reaches Alertmanager. Everything listens on
127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_deploy import concrete_expression, dashboard_expressions

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "alerts" / "reaper-rules.yml"
ALERTMANAGER_CONFIG = ROOT / "alerts" / "alertmanager.yml"
METRIC_NAME = re.compile(r"\b((?:reaper|process)_[a-z_]+)\b")
WAIT_SECONDS = 60


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; .ci/run must install it")
        pytest.skip(f"{name} is not installed on this machine")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def wait_for(what: str, check: Any, seconds: float = WAIT_SECONDS) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Stack:
    """The running daemon, Prometheus and Alertmanager."""

    reaper: str
    prometheus: str
    alertmanager: str

    def query(self, expression: str) -> dict[str, Any]:
        """Evaluate ``expression`` now through Prometheus's HTTP API; return its whole answer."""
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        try:
            return dict(get_json(url))
        except urllib.error.HTTPError as error:  # a malformed expression answers 400 bad_data
            return dict(json.loads(error.read()))


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def short_rules(folder: Path) -> Path:
    """A copy of the shipped rules with every ``for:`` shortened, so that alerts fire in seconds."""
    text = re.sub(r"(?m)^(\s*for:\s*)\S+", r"\g<1>1s", RULES.read_text())
    path = folder / "rules.yml"
    path.write_text(text)
    return path


def start(
    argv: list[str],
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)


def start_reaper(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REAPER_")}
    port = free_port()
    env.update(REAPER_METRICS_PORT=str(port), REAPER_STATS_INTERVAL_SECONDS="1")
    # Shadow mode, as the shipped deployments start: the demo's zombies stay for the alerts to fire.
    process = start([sys.executable, "-m", "reaper", "--demo", "--dry-run"], folder / "reaper.log", env, folder)
    base = f"http://127.0.0.1:{port}"
    wait_for("the reaper daemon", lambda: urllib.request.urlopen(base + "/readyz", timeout=2).status == 200)
    return process, base


def start_prometheus(folder: Path, reaper: str, alertmanager: str, rules: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager.removeprefix("http://")]}]}]},
        "scrape_configs": [{"job_name": "reaper", "static_configs": [{"targets": [reaper.removeprefix("http://")]}]}],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    argv = [
        binary("prometheus"), f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    process = start(argv, folder / "prometheus.log")
    base = f"http://127.0.0.1:{port}"
    wait_for("Prometheus to be ready", lambda: urllib.request.urlopen(base + "/-/ready", timeout=2).status == 200)
    return process, base


def start_alertmanager(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = [
        binary("prometheus-alertmanager"), f"--config.file={ALERTMANAGER_CONFIG}",
        f"--storage.path={folder / 'alertmanager'}", f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    process = start(argv, folder / "alertmanager.log")
    base = f"http://127.0.0.1:{port}"
    wait_for("Alertmanager to be ready", lambda: urllib.request.urlopen(base + "/-/ready", timeout=2).status == 200)
    return process, base


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    binary("prometheus")
    binary("prometheus-alertmanager")
    folder = Path(tempfile.mkdtemp(prefix="reaper-e2e-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        alertmanager, alertmanager_url = start_alertmanager(folder)
        processes.append(alertmanager)
        reaper, reaper_url = start_reaper(folder)
        processes.append(reaper)
        prometheus, prometheus_url = start_prometheus(folder, reaper_url, alertmanager_url, short_rules(folder))
        processes.append(prometheus)
        stack = Stack(reaper_url, prometheus_url, alertmanager_url)
        wait_for("the first scrape", lambda: stack.query('reaper_database_up{job="reaper"}')["data"]["result"])
        yield stack
    finally:
        for process in reversed(processes):
            stop(process)
        shutil.rmtree(folder, ignore_errors=True)


def exported_names(stack: Stack) -> set[str]:
    with urllib.request.urlopen(stack.reaper + "/metrics", timeout=10) as response:
        text = response.read().decode()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    return names | {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}


def test_the_shipped_files_have_expressions_to_check() -> None:
    assert len(rule_expressions()) >= 8 and len(dashboard_expressions()) >= 8


@pytest.mark.external
@pytest.mark.parametrize("expression", rule_expressions() + [concrete_expression(e) for e in dashboard_expressions()])
def test_every_rule_and_dashboard_expression_is_valid_and_names_exported_metrics(
    stack: Stack, expression: str
) -> None:
    answer = stack.query(expression)
    assert answer["status"] == "success", answer
    unknown = set(METRIC_NAME.findall(expression)) - exported_names(stack)
    assert not unknown, f"{expression} names metrics the daemon does not export: {unknown}"


@pytest.mark.external
def test_prometheus_scrapes_the_daemon_as_job_reaper(stack: Stack) -> None:
    result = stack.query('up{job="reaper"}')["data"]["result"]
    assert [sample["value"][1] for sample in result] == ["1"]
    stale = stack.query('sum(reaper_stale_tasks{job="reaper",status="running"})')["data"]["result"]
    assert stale[0]["value"][1] == "2"  # the demo's two zombie running tasks


@pytest.mark.external
def test_a_zombie_alert_reaches_alertmanager(stack: Stack) -> None:
    def zombie_alerts() -> list[dict[str, Any]]:
        alerts = get_json(stack.alertmanager + "/api/v2/alerts")
        return [alert for alert in alerts if "Zombie" in alert["labels"]["alertname"]]

    alerts = wait_for("a zombie alert in Alertmanager", zombie_alerts)
    running = [alert for alert in alerts if alert["labels"].get("task_type") == "extract_audio"]
    assert running, alerts
    assert all(alert["labels"]["severity"] in ("warning", "critical") for alert in alerts)
    assert all(alert["annotations"]["runbook_url"].endswith(alert["labels"]["alertname"].lower()) for alert in alerts)
    for alert in running:
        assert alert["labels"]["table"] == "processing_tasks"
        assert "in table processing_tasks" in alert["annotations"]["description"]
        assert alert["annotations"]["dashboard_url"].endswith("&var-table=processing_tasks")
