"""The deployment files: Grafana dashboard and provisioning, Dockerfile, docker compose, Kubernetes.

Static checks, no Docker or cluster needed. `dashboard_expressions()` and `concrete_expression()` are
public for other tests (for instance one that runs every panel's query against a real Prometheus).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from reaper.daemon.metrics import ReaperMetrics
from reaper.policy.policies import standard_policies
from reaper.settings.model import load_settings

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "grafana" / "reaper-dashboard.json"
DASHBOARD_PROVIDER = ROOT / "grafana" / "provisioning" / "dashboards" / "reaper.yaml"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "compose" / "prometheus.yml"
MARIADB_INIT = ROOT / "deploy" / "compose" / "mariadb-init.sql"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
KUBERNETES = ROOT / "deploy" / "kubernetes"
MONITORING_DOC = ROOT / "docs" / "monitoring.md"
RUNBOOK_URL = "docs/runbook.md"  # mixin/config.libsonnet's runbookUrlBase, as the shipped files are rendered
# The schemas the manifests are checked against (kubernetes-validate, offline); custom resources have none there.
KUBERNETES_VERSION = "1.30.0"
CUSTOM_RESOURCES = {"ServiceMonitor", "PrometheusRule"}

METRICS_PORT = 7327
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
# The values an end-to-end check gives the template variables that may appear in a panel's query.
TEMPLATE_VALUES = {
    "$__rate_interval": "1m", "$task_type": ".*", "$job": ".*", "$instance": ".*", "$table": ".*",
}
# Every reaper metric of the dashboard is selected with these matchers.
DASHBOARD_SCOPE = 'job="reaper",job=~"$job",instance=~"$instance",table=~"$table"'
COMPOSE_SERVICES = {"mariadb", "reaper", "prometheus", "alertmanager", "grafana"}

_METRIC_SELECTOR = re.compile(r"\b(reaper_[a-z0-9_]+)\b\s*(\{[^}]*\})?")
_DOCUMENTED_METRIC = re.compile(r"^\| `(reaper_[a-z0-9_]+)` \|", re.MULTILINE)
_GROUPING = re.compile(r"\b(?:by|without) \(([^)]*)\)")


# Helpers

def load_dashboard() -> dict[str, Any]:
    """The dashboard as Grafana reads it."""
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def dashboard_panels(dashboard: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every panel of the dashboard, those inside collapsed rows included."""
    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))
    return list(walk((dashboard or load_dashboard()).get("panels", [])))


def dashboard_expressions() -> list[str]:
    """Every PromQL expression of the dashboard's panels and annotations, as written (template variables unreplaced)."""
    dashboard = load_dashboard()
    panels = [target["expr"] for panel in dashboard_panels() for target in panel.get("targets", []) if "expr" in target]
    return panels + [note["expr"] for note in dashboard["annotations"]["list"] if "expr" in note]


def concrete_expression(expr: str) -> str:
    """`expr` with the template variables replaced as an end-to-end check does (`1m`, `.*`)."""
    for variable, value in TEMPLATE_VALUES.items():
        expr = expr.replace(variable, value)
    return expr


def load_yaml_documents(path: Path) -> list[Any]:
    """All the YAML documents of a file."""
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def kubernetes_object(file_name: str, kind: str) -> dict[str, Any]:
    """The one object of `kind` in deploy/kubernetes/`file_name`."""
    objects = [doc for doc in load_yaml_documents(KUBERNETES / file_name) if doc.get("kind") == kind]
    assert len(objects) == 1, f"{file_name}: expected one {kind}, found {len(objects)}"
    return objects[0]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The instructions of the Dockerfile's last stage."""
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    return instructions[starts[-1]:]


def compose_bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path (relative to the repository) of a compose service's bind mounts."""
    mounts: dict[str, str] = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = source[2:]
    return mounts


def exported_metric_names() -> set[str]:
    """Every metric name the daemon can export, from a registry with every optional metric switched on.

    Settings with a heartbeat column and a task type of its own make the daemon export
    `reaper_heartbeat_timeout_seconds` and samples of `reaper_task_type_threshold_seconds`.
    """
    registry = CollectorRegistry()
    metrics = ReaperMetrics(registry, "0.0.0")
    settings = load_settings({
        "columns": {"heartbeat_at": "heartbeat_at", "attempts": "attempts"},
        "task_types": {"video_slice": {"running_timeout_hours": 36}},
    })
    metrics.set_thresholds(standard_policies(settings))
    text = generate_latest(registry).decode()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    return names | {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}


def dashboard_metric_names() -> set[str]:
    """The reaper metrics the dashboard's queries name."""
    return {m.group(1) for expr in dashboard_expressions() for m in _METRIC_SELECTOR.finditer(expr)}


def probe(container: dict[str, Any], name: str) -> dict[str, Any]:
    assert name in container, f"container {container['name']} has no {name}"
    return container[name]["httpGet"]  # type: ignore[no-any-return]  # parsed YAML


# The Grafana dashboard

def test_the_dashboard_has_its_fixed_uid_title_and_tags() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "reaper-overview"
    assert dashboard["title"] == "reaper: background-job table"
    assert dashboard["tags"] == ["reaper", "prometheus"]
    assert 36 <= dashboard["schemaVersion"] <= 41


def test_the_dashboard_has_no_inputs_and_chooses_its_prometheus_through_a_datasource_variable() -> None:
    dashboard = load_dashboard()
    assert "__inputs" not in dashboard
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_the_job_instance_table_and_task_type_variables_narrow_each_other_and_default_to_all() -> None:
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "instance", "table", "task_type"]
    assert variables["job"]["definition"] == 'label_values(reaper_build_info{job="reaper"}, job)'
    assert variables["instance"]["definition"] == 'label_values(reaper_build_info{job="reaper",job=~"$job"}, instance)'
    assert variables["table"]["definition"] == (
        'label_values(reaper_build_info{job="reaper",job=~"$job",instance=~"$instance"}, table)'
    )
    assert variables["task_type"]["definition"] == f"label_values(reaper_tasks{{{DASHBOARD_SCOPE}}}, task_type)"
    for name in ("job", "instance", "table", "task_type"):
        variable = variables[name]
        assert variable["type"] == "query" and variable["datasource"] == DATASOURCE_REF, name
        assert variable["multi"] is True and variable["includeAll"] is True and variable["allValue"] == ".*", name


def test_every_panel_and_query_uses_the_datasource_variable() -> None:
    for panel in dashboard_panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE_REF, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE_REF) == DATASOURCE_REF, panel["title"]
    assert "${datasource}" not in json.dumps(load_dashboard()["templating"]["list"][0])


def test_every_panel_has_a_unique_id_a_place_a_description_and_a_unit() -> None:
    panels = [p for p in dashboard_panels() if p["type"] not in {"row", "text"}]
    ids = [p["id"] for p in dashboard_panels()]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    assert panels, "the dashboard has no panels"
    for panel in panels:
        assert panel["type"] in {"timeseries", "stat", "table"}, panel["title"]
        assert set(panel["gridPos"]) >= {"x", "y", "w", "h"}, panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        assert panel["description"].strip(), panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"] in {"s", "short", "percentunit"}, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_no_two_panels_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard_panels():
        pos = panel["gridPos"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_every_reaper_metric_in_the_dashboard_is_selected_with_the_selector_and_the_variables() -> None:
    expressions = dashboard_expressions()
    assert expressions
    for expr in expressions:
        matches = list(_METRIC_SELECTOR.finditer(expr))
        assert matches, f"no reaper metric in {expr!r}"
        for match in matches:
            assert match.group(2) and match.group(2).startswith("{" + DASHBOARD_SCOPE), (
                f"{match.group(1)} without {DASHBOARD_SCOPE} in {expr!r}"
            )


def test_every_aggregation_of_the_dashboard_keeps_tables_apart() -> None:
    # Two reapers watching two tables on one Prometheus must never be added up into one line.
    for expr in dashboard_expressions():
        for grouping in _GROUPING.findall(expr):
            labels = {label.strip() for label in grouping.split(",")}
            assert "table" in labels or "row" in labels, f"by ({grouping}) drops the table in {expr!r}"
        assert not re.search(r"\b(?:sum|max|min|avg|count)\s*\(", expr), f"an aggregation without by in {expr!r}"


def test_the_dashboard_uses_only_metrics_the_monitoring_guide_documents() -> None:
    documented = set(_DOCUMENTED_METRIC.findall(MONITORING_DOC.read_text(encoding="utf-8")))
    assert "reaper_tasks" in documented and "reaper_reaped_tasks_total" in documented
    used = {m.group(1) for expr in dashboard_expressions() for m in _METRIC_SELECTOR.finditer(expr)}
    assert used <= documented, f"not in the metrics table of docs/monitoring.md: {sorted(used - documented)}"


def test_the_monitoring_guide_documents_every_metric_the_daemon_exports() -> None:
    documented = set(_DOCUMENTED_METRIC.findall(MONITORING_DOC.read_text(encoding="utf-8")))
    # The daemon exports no *_created series (reaper.daemon.service turns them off).
    exported = {name for name in exported_metric_names() if name.startswith("reaper_")}
    exported = {name for name in exported if not name.endswith("_created")}
    assert exported <= documented, f"not in the metrics table of docs/monitoring.md: {sorted(exported - documented)}"


def test_the_dashboard_shows_every_metric_an_operator_watches() -> None:
    used = {m.group(1) for expr in dashboard_expressions() for m in _METRIC_SELECTOR.finditer(expr)}
    assert used >= {
        "reaper_tasks", "reaper_stale_tasks", "reaper_oldest_task_age_seconds", "reaper_reaped_tasks_total",
        "reaper_runs_total", "reaper_run_duration_seconds", "reaper_last_success_timestamp_seconds",
        "reaper_database_up", "reaper_threshold_seconds", "reaper_dry_run_candidates",
        "reaper_task_type_threshold_seconds", "reaper_heartbeat_timeout_seconds",
        "reaper_task_type_oldest_age_seconds", "reaper_last_totals_timestamp_seconds",
    }


def test_the_dashboard_uses_only_metrics_the_daemon_exports() -> None:
    exported = exported_metric_names()
    assert {"reaper_task_type_threshold_seconds", "reaper_heartbeat_timeout_seconds"} <= exported
    used = dashboard_metric_names()
    assert used <= exported, f"the daemon exports no {sorted(used - exported)}"


def test_the_dashboard_shows_the_thresholds_of_each_task_type_beside_the_defaults() -> None:
    # The other panels that read it compare each type's oldest task with its limit.
    (panel,) = [p for p in dashboard_panels() if p["title"] == "Thresholds by task type"]
    assert panel["type"] == "table"
    assert panel["fieldConfig"]["defaults"]["unit"] == "s"
    expressions = [t["expr"] for t in panel["targets"]]
    assert all(t.get("format") == "table" and t.get("instant") is True for t in panel["targets"])
    joined = "\n".join(expressions)
    assert re.search(r"by \(row, threshold\) \(label_join\(reaper_task_type_threshold_seconds\{", joined), joined
    # The global values sit in the same table, as a row of their own, so that each type compares with them.
    assert "reaper_threshold_seconds{" in joined and "reaper_heartbeat_timeout_seconds{" in joined
    (matrix,) = [t["options"] for t in panel["transformations"] if t["id"] == "groupingToMatrix"]
    assert (matrix["rowField"], matrix["columnField"], matrix["valueField"]) == ("row", "threshold", "Value")
    assert '"row", " / ", "table", "task_type"' in joined  # a row per table and task type


def test_the_oldest_task_of_each_type_is_shown_against_its_own_limit_in_red_above_it() -> None:
    (panel,) = [p for p in dashboard_panels() if p["title"] == "Oldest task of each type against its limit"]
    assert panel["type"] == "table"
    ratio = panel["targets"][2]["expr"]
    for metric in ("reaper_task_type_oldest_age_seconds", "reaper_task_type_threshold_seconds",
                   "reaper_threshold_seconds"):
        assert metric + "{" in ratio, metric  # each type's own limit, else the default one
    (share,) = [o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == "of its limit"]
    properties = {item["id"]: item["value"] for item in share["properties"]}
    assert properties["unit"] == "percentunit"
    assert properties["thresholds"]["steps"][-1] == {"color": "red", "value": 1}
    (stat,) = [p for p in dashboard_panels() if p["title"] == "Oldest task against its limit"]
    assert stat["fieldConfig"]["defaults"]["thresholds"]["steps"][-1] == {"color": "red", "value": 1}


def test_the_dashboard_links_to_the_runbook_and_to_each_alerts_section() -> None:
    dashboard = load_dashboard()
    assert [link["url"] for link in dashboard["links"]] == [RUNBOOK_URL]
    (alerts,) = [p for p in dashboard_panels() if p["type"] == "text"]
    rules = yaml.safe_load((ROOT / "alerts" / "reaper-rules.yml").read_text(encoding="utf-8"))
    for rule in rules["groups"][0]["rules"]:
        assert f"({rule['annotations']['runbook_url']})" in alerts["options"]["content"], rule["alert"]
    linked = {link["url"] for panel in dashboard_panels() for link in panel.get("links", [])}
    assert {rule["annotations"]["runbook_url"] for rule in rules["groups"][0]["rules"]} - linked <= {
        f"{RUNBOOK_URL}#reaperdown", f"{RUNBOOK_URL}#reaperabsent",  # no panel without a scrape
    }


def test_the_dashboard_marks_each_cleanup_from_reaper_runs_total() -> None:
    (cleanups,) = [note for note in load_dashboard()["annotations"]["list"] if note.get("name") == "Cleanups"]
    assert cleanups["datasource"] == DATASOURCE_REF and cleanups["enable"] is True
    assert "increase(reaper_runs_total{" in cleanups["expr"] and 'mode="cleanup"' in cleanups["expr"]
    assert "{{outcome}}" in cleanups["titleFormat"]


def test_the_default_heartbeat_limit_is_shown_with_the_default_thresholds() -> None:
    stats = [p for p in dashboard_panels() if p["type"] == "stat"
             and {"reaper_threshold_seconds", "reaper_heartbeat_timeout_seconds"}
             <= {m.group(1) for t in p["targets"] for m in _METRIC_SELECTOR.finditer(t["expr"])}]
    assert stats and all(p["fieldConfig"]["defaults"]["unit"] == "s" for p in stats)


def test_every_panel_of_reaped_rows_shows_requeued_beside_failed_and_deleted() -> None:
    found = []
    for panel in dashboard_panels():
        expressions = [t["expr"] for t in panel.get("targets", []) if "reaper_reaped_tasks_total" in t.get("expr", "")]
        if not expressions:
            continue
        found.append(panel["title"])
        split_by_action = any(re.search(r"\bby \([^)]*\baction\b", expr) for expr in expressions)
        one_per_action = {action for expr in expressions for action in re.findall(r'action="(\w+)"', expr)}
        assert split_by_action or one_per_action >= {"failed", "requeued", "deleted"}, panel["title"]
    assert found


def test_queries_use_no_template_variables_but_the_rate_interval_and_the_four_variables() -> None:
    for expr in dashboard_expressions():
        assert "$" not in concrete_expression(expr).replace('"$1"', ""), expr  # $1: label_replace's group


@pytest.mark.external
def test_every_dashboard_query_parses_as_promql(tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed; .ci/run must install Debian's prometheus")
        pytest.skip("promtool (Debian's prometheus) is not installed")
    # promtool parses each rule's expression: the dashboard's queries become recording rules.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": concrete_expression(expr)}
        for i, expr in enumerate(dashboard_expressions())
    ]}]}
    rule_file = tmp_path / "dashboard-rules.yml"
    rule_file.write_text(yaml.safe_dump(rules), encoding="utf-8")
    result = subprocess.run(["promtool", "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# Grafana provisioning

def test_the_dashboard_provider_loads_the_folder_compose_mounts_the_dashboard_into() -> None:
    provider_file = load_yaml_documents(DASHBOARD_PROVIDER)[0]
    assert provider_file["apiVersion"] == 1
    (provider,) = provider_file["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "reaper"
    path = provider["options"]["path"]
    assert path == "/var/lib/grafana/dashboards"
    grafana = load_yaml_documents(COMPOSE)[0]["services"]["grafana"]
    mounts = compose_bind_mounts(grafana)
    dashboard_targets = [target for target, source in mounts.items() if source == "grafana/reaper-dashboard.json"]
    assert dashboard_targets and all(target.startswith(path + "/") for target in dashboard_targets)
    assert mounts["/etc/grafana/provisioning"] == "grafana/provisioning"


def test_the_grafana_datasource_is_the_compose_prometheus() -> None:
    datasources = load_yaml_documents(DATASOURCES)[0]
    assert datasources["apiVersion"] == 1
    (prometheus,) = datasources["datasources"]
    assert prometheus["name"] == "Prometheus"
    assert prometheus["uid"] == "prometheus"
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "http://prometheus:9090"
    assert prometheus["isDefault"] is True
    assert "prometheus" in load_yaml_documents(COMPOSE)[0]["services"]


# Every YAML file

def _yaml_files() -> list[Path]:
    return sorted([*(ROOT / "deploy").rglob("*.yml"), *(ROOT / "deploy").rglob("*.yaml"),
                   *(ROOT / "grafana").rglob("*.yaml"), COMPOSE])


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_file_parses(path: Path) -> None:
    assert load_yaml_documents(path), f"{path} holds no YAML document"


# docker compose

def test_compose_brings_up_the_database_reaper_prometheus_alertmanager_and_grafana() -> None:
    services = load_yaml_documents(COMPOSE)[0]["services"]
    assert set(services) == COMPOSE_SERVICES
    assert services["mariadb"]["image"].startswith("mariadb:10.11")
    assert services["prometheus"]["image"].startswith("prom/prometheus")
    assert services["alertmanager"]["image"].startswith("prom/alertmanager")
    assert services["grafana"]["image"].startswith("grafana/grafana")


def test_compose_starts_reaper_in_shadow_mode_archiving_to_a_named_volume() -> None:
    compose = load_yaml_documents(COMPOSE)[0]
    reaper = compose["services"]["reaper"]
    assert reaper["command"] == ["--dry-run"]
    text = COMPOSE.read_text(encoding="utf-8")
    assert "To let it write, delete this line" in text.split('command: ["--dry-run"]')[0].splitlines()[-2]
    env = reaper["environment"]
    assert env["REAPER_ARCHIVE"] == "jsonl"
    volume, target = reaper["volumes"][0].split()[0].split(":")[:2]
    assert volume in compose["volumes"] and target == "/data"  # named, not a bind mount
    for setting in ("REAPER_ARCHIVE_DIR", "REAPER_AUDIT_LOG"):
        assert env[setting].startswith(target + "/"), setting


def test_compose_builds_reaper_here_and_starts_it_once_the_database_is_healthy() -> None:
    services = load_yaml_documents(COMPOSE)[0]["services"]
    reaper = services["reaper"]
    assert reaper["build"] in (".", {"context": "."})
    assert reaper["depends_on"]["mariadb"]["condition"] == "service_healthy"
    assert "healthcheck" in services["mariadb"]
    url = reaper["environment"]["REAPER_DATABASE_URL"]
    assert re.match(r"mysql\+pymysql://reaper:[^@]+@mariadb:3306/app(\?|$)", url), url
    password = url.split("://reaper:", 1)[1].split("@", 1)[0]
    assert f"IDENTIFIED BY '{password}'" in MARIADB_INIT.read_text(encoding="utf-8")


def test_compose_mounts_only_files_of_this_repository_or_the_alert_rules() -> None:
    services = load_yaml_documents(COMPOSE)[0]["services"]
    for name, service in services.items():
        for source in compose_bind_mounts(service).values():
            if source.startswith("alerts/"):
                continue  # written alongside, see alerts/
            assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
    prometheus_mounts = compose_bind_mounts(services["prometheus"])
    assert prometheus_mounts["/etc/prometheus/prometheus.yml"] == "deploy/compose/prometheus.yml"
    assert any(t.startswith("/etc/prometheus/rules/") and s.startswith("alerts/") for t, s in prometheus_mounts.items())
    assert (
        compose_bind_mounts(services["alertmanager"])["/etc/alertmanager/alertmanager.yml"] == "alerts/alertmanager.yml"
    )
    mariadb_mounts = compose_bind_mounts(services["mariadb"])
    assert any(t.startswith("/docker-entrypoint-initdb.d/") and s == "deploy/compose/mariadb-init.sql"
               for t, s in mariadb_mounts.items())


def test_prometheus_scrapes_the_daemon_as_job_reaper_and_alerts_through_alertmanager() -> None:
    config = load_yaml_documents(PROMETHEUS_CONFIG)[0]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert [t for c in jobs["reaper"]["static_configs"] for t in c["targets"]] == [f"reaper:{METRICS_PORT}"]
    assert "/etc/prometheus/rules/*.yml" in config["rule_files"]
    targets = [t for am in config["alerting"]["alertmanagers"] for c in am["static_configs"] for t in c["targets"]]
    assert targets == ["alertmanager:9093"]


def test_the_database_init_creates_the_table_its_indexes_and_a_reaper_login_that_can_only_select_update_delete(
) -> None:
    sql = MARIADB_INIT.read_text(encoding="utf-8")
    assert re.search(r"CREATE TABLE IF NOT EXISTS processing_tasks", sql)
    assert "DATETIME(6)" in sql
    for columns in (
        "(status, started_at, id)",
        "(status, created_at, id)",
        "(status, completed_at, id)",
        "(created_at)",
    ):
        assert re.search(r"INDEX ix_processing_tasks_\w+ " + re.escape(columns), sql), columns
    grants = re.findall(r"^GRANT (.+?) ON (\S+) TO 'reaper'@'%';", sql, re.MULTILINE)
    assert grants == [("SELECT, UPDATE, DELETE", "app.processing_tasks")]


# The image

def test_the_image_runs_reaper_as_a_non_root_user() -> None:
    users = [args for keyword, args in final_stage(dockerfile_instructions()) if keyword == "USER"]
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert "10001" in users[-1]


def test_the_image_listens_on_all_interfaces_on_port_7327_and_checks_its_health() -> None:
    stage = final_stage(dockerfile_instructions())
    assert ("EXPOSE", str(METRICS_PORT)) in stage
    envs = " ".join(args for keyword, args in stage if keyword == "ENV")
    assert re.search(r"\bREAPER_METRICS_HOST=0\.0\.0\.0\b", envs)
    (healthcheck,) = [args for keyword, args in stage if keyword == "HEALTHCHECK"]
    assert "urllib" in healthcheck and "/healthz" in healthcheck and "127.0.0.1" in healthcheck
    assert "curl" not in healthcheck


def test_the_image_runs_the_reaper_command_with_no_default_arguments() -> None:
    stage = final_stage(dockerfile_instructions())
    (entrypoint,) = [args for keyword, args in stage if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["reaper"]
    assert not [args for keyword, args in stage if keyword == "CMD"]
    assert ("WORKDIR", "/data") in stage


def test_the_image_is_built_in_two_python_311_slim_stages_with_the_postgresql_extra() -> None:
    instructions = dockerfile_instructions()
    bases = [args.split()[0] for keyword, args in instructions if keyword == "FROM"]
    assert bases == ["python:3.11-slim", "python:3.11-slim"]
    runs = " ".join(args for keyword, args in instructions if keyword == "RUN")
    assert "pip wheel" in runs and "[postgresql]" in runs


def test_the_build_context_leaves_out_git_caches_virtualenvs_and_databases() -> None:
    ignored = {line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
               if line.strip() and not line.startswith("#")}
    for pattern in (".git", ".pytest_cache", ".venv", "**/*.sqlite3", "**/.env", "**/__pycache__"):
        assert pattern in ignored, pattern
    assert not {"README.md", "pyproject.toml", "reaper"} & ignored  # the build needs them


# Kubernetes

def test_the_kubernetes_deployment_runs_the_daemon_as_non_root_with_a_read_only_root() -> None:
    deployment = kubernetes_object("deployment.yaml", "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # the volume is ReadWriteOnce
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    assert "command" not in container  # the image's ENTRYPOINT: the daemon
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def _archives_on_a_claim(file_name: str, kind: str, pod: dict[str, Any], claim_file: str) -> None:
    """The pod archives with jsonl, and both the archives and the audit log sit on the claim of ``claim_file``."""
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["REAPER_ARCHIVE"] == "jsonl", file_name
    claim = kubernetes_object(claim_file, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = [m for m in container["volumeMounts"]
              if volumes[m["name"]].get("persistentVolumeClaim", {}).get("claimName") == claim["metadata"]["name"]]
    assert len(mounts) == 1, f"{file_name}: the {kind} does not mount {claim_file}"
    for setting in ("REAPER_ARCHIVE_DIR", "REAPER_AUDIT_LOG"):
        assert env[setting].startswith(mounts[0]["mountPath"] + "/"), (file_name, setting)


def test_the_kubernetes_deployment_starts_in_shadow_mode_and_says_how_to_leave_it() -> None:
    pod = kubernetes_object("deployment.yaml", "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["--dry-run"]
    text = (KUBERNETES / "deployment.yaml").read_text(encoding="utf-8")
    assert "SHADOW MODE" in text and "To let it write, delete the `args` line" in text
    _archives_on_a_claim("deployment.yaml", "Deployment", pod, "persistentvolumeclaim.yaml")


def test_the_kubernetes_cronjob_starts_in_shadow_mode_and_archives_on_a_claim_of_its_own() -> None:
    cronjob = kubernetes_object("cronjob.yaml", "CronJob")
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "--dry-run" in container["args"]
    text = (KUBERNETES / "cronjob.yaml").read_text(encoding="utf-8")
    assert "SHADOW MODE" in text and 'To let it write, delete "--dry-run"' in text
    _archives_on_a_claim("cronjob.yaml", "CronJob", pod, "cronjob-persistentvolumeclaim.yaml")
    daemon = kubernetes_object("persistentvolumeclaim.yaml", "PersistentVolumeClaim")
    own = kubernetes_object("cronjob-persistentvolumeclaim.yaml", "PersistentVolumeClaim")
    assert daemon["metadata"]["name"] != own["metadata"]["name"]  # ReadWriteOnce: not shared with the daemon


@pytest.mark.parametrize("path", sorted(KUBERNETES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_kubernetes_file_holds_one_object_that_validates_against_its_schema(path: Path) -> None:
    (document,) = load_yaml_documents(path)
    if document["kind"] in CUSTOM_RESOURCES:
        assert document["apiVersion"] == "monitoring.coreos.com/v1"  # no schema offline: the tests above check them
        return
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{path.name}: {error.message} at {'.'.join(map(str, error.path))}")


def test_the_kubernetes_deployment_probes_healthz_and_readyz_on_port_7327() -> None:
    deployment = kubernetes_object("deployment.yaml", "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert probe(container, "livenessProbe") == {"path": "/healthz", "port": METRICS_PORT}
    assert probe(container, "readinessProbe") == {"path": "/readyz", "port": METRICS_PORT}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": METRICS_PORT}
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_the_kubernetes_deployment_reads_the_database_url_from_the_secret() -> None:
    deployment = kubernetes_object("deployment.yaml", "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["REAPER_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "reaper-database", "key": "url"}
    assert env["REAPER_METRICS_HOST"]["value"] == "0.0.0.0"


def test_the_service_and_the_pod_template_carry_the_scrape_annotations() -> None:
    service = kubernetes_object("service.yaml", "Service")
    deployment = kubernetes_object("deployment.yaml", "Deployment")
    for scrape_annotations in (
        service["metadata"]["annotations"],
        deployment["spec"]["template"]["metadata"]["annotations"],
    ):
        assert scrape_annotations["prometheus.io/scrape"] == "true"
        assert scrape_annotations["prometheus.io/port"] == str(METRICS_PORT)
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}]


def test_the_service_selects_the_daemons_pods_and_not_the_cronjobs() -> None:
    selector = kubernetes_object("service.yaml", "Service")["spec"]["selector"]
    deployment_labels = kubernetes_object("deployment.yaml", "Deployment")["spec"]["template"]["metadata"]["labels"]
    cronjob = kubernetes_object("cronjob.yaml", "CronJob")
    job_labels = cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= deployment_labels.items()
    assert not selector.items() <= job_labels.items()


def test_the_service_monitor_scrapes_the_service_as_job_reaper() -> None:
    monitor = kubernetes_object("servicemonitor.yaml", "ServiceMonitor")
    service = kubernetes_object("service.yaml", "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    relabelled = [r for e in monitor["spec"]["endpoints"] for r in e.get("relabelings", [])
                  if r.get("targetLabel") == "job"]
    job = service["metadata"]["labels"].get(monitor["spec"].get("jobLabel", ""), service["metadata"]["name"])
    assert job == "reaper" or any(r.get("replacement") == "reaper" for r in relabelled)


def test_the_cronjob_runs_reaper_once_daily_at_two_and_never_overlaps() -> None:
    cronjob = kubernetes_object("cronjob.yaml", "CronJob")
    assert cronjob["spec"]["schedule"] == "0 2 * * *"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container.get("command", ["reaper"]) + container.get("args", [])
    assert command[0] == "reaper" and "--once" in command
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e for e in container["env"]}
    assert env["REAPER_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "reaper-database", "key": "url"}


def test_no_prometheus_rule_is_written_here() -> None:
    # deploy/kubernetes/prometheusrule.yaml belongs to the alert rules' author; nothing here defines one.
    for path in KUBERNETES.glob("*.yaml"):
        if path.name == "prometheusrule.yaml":
            continue
        assert all(doc.get("kind") != "PrometheusRule" for doc in load_yaml_documents(path)), path.name
