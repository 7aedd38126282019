"""The documentation: reference pages that cover every setting, flag and metric, a README that starts
you, and examples that load."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from freezegun import freeze_time
from prometheus_client import CollectorRegistry

from helpers import NOW
from reaper.cli.command import build_parser, main
from reaper.daemon.metrics import ReaperMetrics
from reaper.settings.model import ENV_PREFIX, setting_fields

ROOT = Path(__file__).resolve().parents[1]


def hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def setting_names() -> list[str]:
    names = []
    for name, field in setting_fields().items():
        nested = getattr(field.annotation, "model_fields", None)
        names += [f"{ENV_PREFIX}{name.upper()}__{key.upper()}" for key in nested] if nested else [
            f"{ENV_PREFIX}{name.upper()}"
        ]
    return names


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return dict(hooks().generate(tmp_path_factory.mktemp("docs")))


def test_the_settings_reference_has_every_setting(reference: dict[str, str]) -> None:
    missing = [name for name in setting_names() if f"`{name}`" not in reference["settings.md"]]
    assert not missing and "`REAPER_RESCUE_INTERVAL_SECONDS` | `rescue_interval_seconds` | float | `300.0`" in (
        reference["settings.md"]
    )


def test_the_flags_reference_has_every_flag(reference: dict[str, str]) -> None:
    flags = [flag for action in build_parser()._actions for flag in action.option_strings]
    assert len(flags) > 30 and not [flag for flag in flags if f"`{flag}`" not in reference["flags.md"]]


def test_the_metrics_reference_has_every_metric_with_its_labels(reference: dict[str, str]) -> None:
    registry = CollectorRegistry()
    ReaperMetrics(registry, "0", 50)
    names = {family.name for family in registry.collect()}
    page = reference["metrics.md"]
    assert len(names) > 20 and not [name for name in names if f"`{name}" not in page]
    assert "| `reaper_runs_total` | counter | `mode`, `outcome` |" in page


def test_the_configuration_page_describes_every_setting() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    # the statuses share one row: REAPER_STATUSES__PENDING ... `__RUNNING`, ...
    missing = [name for name in setting_names() if name not in text and f"`__{name.rsplit('__', 1)[-1]}`" not in text]
    assert not missing, f"docs/configuration.md lacks {missing}"


def test_the_readme_is_short_and_its_links_lead_somewhere() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert links and not [link for link in links if not link.startswith("http") and not (ROOT / link).exists()]


@freeze_time(NOW)
def test_the_example_settings_file_has_every_setting_and_loads_on_the_demo() -> None:
    example = ROOT / "examples" / "reaper.toml"
    text = example.read_text()
    keys = [name for name in setting_fields() if name not in ("config_file",)]
    assert not [key for key in keys if not re.search(rf"^#? ?{key} = ", text, re.M) and f"[{key}" not in text]
    assert tomllib.loads(text)["columns"]["finished_at"] == "completed_at"
    assert main(["--demo", "--once", "--dry-run", "--config", str(example)]) == 0


@freeze_time(NOW)
def test_the_example_environment_file_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for line in (ROOT / "examples" / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("REAPER_DATABASE_URL", f"sqlite:///{tmp_path / 'absent.sqlite3'}")
    monkeypatch.setenv("REAPER_ARCHIVE_DIR", str(tmp_path / "archive"))
    monkeypatch.setenv("REAPER_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    assert main(["--demo", "--once", "--dry-run"]) == 0
