"""The policy specs drive the rest: every policy's settings, metric series, index advice and audit
keys follow from its spec, and the settings they feed sit below the engine."""

from __future__ import annotations

import ast
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from helpers import NOW, Tasks, open_tasks, settings_for
from reaper.cli.command import _overrides
from reaper.cli.parser import build_parser
from reaper.daemon.metrics import ReaperMetrics
from reaper.database.table import AGE_COLUMNS
from reaper.engine.cleanup import exclusive_cleanup, run_options
from reaper.inspect.indexes import check_indexes
from reaper.policy.catalog import STANDARD_POLICY_NAMES, STANDARD_SPECS, policy_options
from reaper.policy.policies import standard_policies
from reaper.policy.spec import MAX_ATTEMPTS, Action, ActionChoice, Count, Limit, Option, PolicySpec, Unit
from reaper.settings.model import Settings, load_settings, setting_fields
from reaper.settings.policies import TaskTypeSettings

ROOT = Path(__file__).resolve().parents[1]
LIMITS = [option for option in policy_options() if isinstance(option, Limit)]
# The keys of the audit line's "settings": read by people and tools, they stay as they are.
AUDITED = {
    "table", "running_timeout_hours", "pending_timeout_hours", "failure_retention_days", "success_retention_days",
    "heartbeat_timeout_minutes", "running_timeout_action", "pending_timeout_action", "max_attempts", "task_types",
    "batch_size", "batch_time_seconds", "batch_ceiling", "sleep_seconds", "max_runtime_seconds", "archive",
    "max_load", "critical_load", "max_replica_lag_seconds", "max_pause_seconds", "replica_urls",
}


def other_value(option: Option) -> Any:
    """A valid value of ``option``'s setting that is not its default."""
    if isinstance(option, Limit):
        return option.default * 2
    if isinstance(option, ActionChoice):
        return option.choices[-1].value
    return option.default + 1


def test_the_standard_policies_keep_their_names_statuses_and_order() -> None:
    assert [(spec.name, spec.status) for spec in STANDARD_SPECS] == [
        ("running_timeout", "running"), ("pending_timeout", "pending"),
        ("failure_retention", "failure"), ("success_retention", "success"),
    ]


@pytest.mark.parametrize("option", policy_options(), ids=lambda option: option.key)
def test_every_policy_setting_is_read_from_the_environment_and_from_a_task_type_table(
    option: Option, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    value = other_value(option)
    assert option.key in setting_fields() and option.key in TaskTypeSettings.model_fields
    monkeypatch.setenv(f"REAPER_{option.key.upper()}", str(value))
    assert load_settings().value_of(option.key) == value
    monkeypatch.delenv(f"REAPER_{option.key.upper()}")
    config = tmp_path / "r.toml"
    config.write_text(f"[task_types.video]\n{option.key} = {json.dumps(value)}\n")
    in_force = load_settings(config_file=config).policies
    assert getattr(in_force.for_task_type("video"), option.key) == value
    assert getattr(in_force.for_task_type("other"), option.key) != value


@pytest.mark.parametrize("option", LIMITS, ids=lambda option: option.key)
def test_an_age_limit_is_refused_beyond_a_century_of_its_unit(option: Limit, monkeypatch: pytest.MonkeyPatch) -> None:
    century = {Unit.DAYS: 36500, Unit.HOURS: 36500 * 24, Unit.MINUTES: 36500 * 24 * 60}[option.unit]
    monkeypatch.setenv(f"REAPER_{option.key.upper()}", str(century))
    assert load_settings().value_of(option.key) == century
    monkeypatch.setenv(f"REAPER_{option.key.upper()}", str(century + 1))
    with pytest.raises(Exception, match=f"invalid setting REAPER_{option.key.upper()}"):
        load_settings()


def test_every_policy_setting_is_described_in_the_configuration_page_and_every_policy_in_the_policies_page() -> None:
    configuration = (ROOT / "docs" / "configuration.md").read_text()
    assert not [o.key for o in policy_options() if f"`REAPER_{o.key.upper()}`" not in configuration]
    policies = (ROOT / "docs" / "policies.md").read_text()
    assert not [name for name in STANDARD_POLICY_NAMES if f"| `{name}` |" not in policies]


@pytest.mark.parametrize("spec", [spec for spec in STANDARD_SPECS if spec.age.flag], ids=lambda spec: spec.name)
def test_every_age_limit_flag_sets_its_policy_setting_and_is_listed_under_thresholds(spec: PolicySpec) -> None:
    assert spec.age.flag is not None
    settings = load_settings(overrides=_overrides(build_parser().parse_args([spec.age.flag, "3"])))
    assert settings.value_of(spec.age.key) == 3
    thresholds = build_parser().format_help().split("\nthresholds:")[1].split("\n\n", 2)[1]
    assert f"{spec.age.flag} " in thresholds and f"(default {spec.age.default:g})" in thresholds


def test_every_policy_and_action_has_its_reaped_series_from_the_start() -> None:
    registry = CollectorRegistry()
    ReaperMetrics(registry, "0", 50)
    for spec in STANDARD_SPECS:
        for action in spec.actions:
            labels = {"policy": spec.name, "action": action.done}
            assert registry.get_sample_value("reaper_reaped_tasks_total", labels) == 0, labels
    never = {"policy": "running_timeout", "action": "deleted"}
    assert registry.get_sample_value("reaper_reaped_tasks_total", never) is None


def test_every_age_limit_is_exported_by_its_label_for_the_defaults_and_a_task_type() -> None:
    own = {option.key: option.default * 2 for option in LIMITS}
    settings = Settings(columns={"heartbeat_at": "last_beat"}, task_types={"video": own})
    registry = CollectorRegistry()
    metrics = ReaperMetrics(registry, "0", 50)
    metrics.set_thresholds(standard_policies(settings))
    for spec in STANDARD_SPECS:
        seconds = spec.age.unit.duration(spec.age.default).total_seconds()
        assert registry.get_sample_value("reaper_threshold_seconds", {"policy": spec.name}) == seconds
    for option in LIMITS:
        labels = {"task_type": "video", "threshold": option.label}
        seconds = option.unit.duration(option.default * 2).total_seconds()
        assert registry.get_sample_value("reaper_task_type_threshold_seconds", labels) == seconds, labels
    assert {option.label for option in LIMITS} >= {"running_timeout", "heartbeat_timeout"}


def test_check_indexes_recommends_an_index_for_every_policy(tasks: Tasks, database_url: str) -> None:
    advice = check_indexes(open_tasks(tasks.engine, settings_for(database_url)))
    served = [name for item in advice for name in item.purpose.split(", ")]
    assert sorted(name for name in served if name in STANDARD_POLICY_NAMES) == sorted(STANDARD_POLICY_NAMES)


def test_the_audit_line_records_every_policy_and_its_settings(tasks: Tasks, database_url: str, tmp_path: Path) -> None:
    for spec in STANDARD_SPECS:  # one row of each policy's status, an hour past its default limit
        dated_by = AGE_COLUMNS[spec.status][0]
        tasks.add(spec.status, **{dated_by: NOW - spec.age.unit.duration(spec.age.default) - timedelta(hours=1)})
    audit = tmp_path / "audit.jsonl"
    settings = settings_for(database_url, audit_log=str(audit))
    table = open_tasks(tasks.engine, settings)
    run = exclusive_cleanup(table, standard_policies(settings), NOW, run_options(settings, False), settings, "once")
    (line,) = [json.loads(text) for text in audit.read_text().splitlines()]
    assert run.affected == len(STANDARD_SPECS) and set(line["policies"]) == set(STANDARD_POLICY_NAMES)
    assert set(line["settings"]) == AUDITED
    assert {option.key for option in policy_options()} <= set(line["settings"])
    assert line["settings"]["running_timeout_hours"] == 24 and line["settings"]["max_attempts"] == 3


def test_a_spec_that_contradicts_itself_is_refused() -> None:
    age = Limit("retry_timeout_hours", Unit.HOURS, 6.0, "hours a retry may wait")
    with pytest.raises(ValueError, match="must end with its unit"):
        PolicySpec("retry_timeout", "retry", Limit("retry_timeout", Unit.HOURS, 6.0, "no unit"), Action.FAIL)
    with pytest.raises(ValueError, match="attempts bound needs requeue"):
        PolicySpec("retry_timeout", "retry", age, Action.FAIL, attempts=MAX_ATTEMPTS)
    with pytest.raises(ValueError, match="at least one choice"):
        PolicySpec("retry_timeout", "retry", age, ActionChoice("retry_timeout_action", (), "what it does"))
    other_bound = Count("max_attempts", 5, 1, 10, "another bound under the same name")
    clash = PolicySpec("retry_timeout", "retry", age, ActionChoice("a", (Action.REQUEUE,), "x"), attempts=other_bound)
    with pytest.raises(ValueError, match="max_attempts is declared twice"):
        policy_options((*STANDARD_SPECS, clash))


def test_a_new_spec_adds_its_settings_after_those_of_the_same_kind() -> None:
    retry = PolicySpec(
        "retry_timeout", "retry", Limit("retry_timeout_hours", Unit.HOURS, 6.0, "hours a retry may wait"),
        ActionChoice("retry_timeout_action", (Action.FAIL, Action.REQUEUE), "what it does"), attempts=MAX_ATTEMPTS,
    )
    keys = [option.key for option in policy_options((*STANDARD_SPECS, retry))]
    assert keys == [
        "running_timeout_hours", "pending_timeout_hours", "failure_retention_days", "success_retention_days",
        "retry_timeout_hours", "heartbeat_timeout_minutes", "running_timeout_action", "pending_timeout_action",
        "retry_timeout_action", "max_attempts",
    ]
    assert retry.finds_zombies and not STANDARD_SPECS[-1].finds_zombies


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "reaper" / "settings").glob("*.py")), ids=lambda path: path.name)
def test_the_settings_import_nothing_from_the_layers_above_them(path: Path) -> None:
    above = ("reaper.engine", "reaper.daemon", "reaper.cli", "reaper.inspect", "reaper.safety")
    assert not [name for name in _imports(path) if name.startswith(above)]


@pytest.mark.parametrize(
    "path", sorted(set((ROOT / "reaper" / "policy").glob("*.py")) - {ROOT / "reaper" / "policy" / name for name in (
        "policies.py", "matching.py")}), ids=lambda path: path.name,
)
def test_the_specs_import_nothing_of_reaper_but_each_other(path: Path) -> None:
    # The settings read the specs: a spec that imported the settings, the database or the engine would be a cycle.
    reaper_imports = {name for name in _imports(path) if name.startswith("reaper")}
    users_of_the_settings = ("reaper.policy.policies", "reaper.policy.matching")
    assert not [name for name in reaper_imports if not name.startswith("reaper.policy")]
    assert not [name for name in reaper_imports if name.startswith(users_of_the_settings)]
