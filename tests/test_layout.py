"""The package's layout rules (docs/architecture.md): read from the sources, so that a change that
breaks one fails here instead of waiting for a reviewer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "reaper"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 400


def _imports(path: Path, froms_only: bool = False) -> set[str]:
    """Every module ``path`` imports, by its dotted name (``from a import b`` gives ``a``); with
    ``froms_only``, those it takes names from alone."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import) and not froms_only:
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def _package(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0] if len(path.relative_to(PACKAGE).parts) > 1 else ""


def test_no_module_of_the_package_is_over_four_hundred_lines() -> None:
    lines = {str(path.relative_to(PACKAGE)): len(path.read_text().splitlines()) for path in MODULES}
    assert {module: count for module, count in lines.items() if count > MAX_LINES} == {}


def test_only_the_daemon_package_imports_prometheus_client() -> None:
    outside = [path for path in MODULES if _package(path) != "daemon"
               and any(name.split(".")[0] == "prometheus_client" for name in _imports(path))]
    assert outside == []


@pytest.mark.parametrize(
    "package, above",
    [
        ("safety", ("engine", "daemon", "cli", "inspect")),
        ("policy", ("engine", "daemon", "cli", "inspect", "safety")),
        ("database", ("engine", "daemon", "cli", "inspect", "safety", "policy")),
        ("engine", ("daemon", "cli", "inspect")),
        ("inspect", ("daemon", "cli")),
        ("daemon", ("cli",)),
    ],
)
def test_a_package_imports_none_of_the_packages_above_it(package: str, above: tuple[str, ...]) -> None:
    forbidden = {f"reaper.{name}" for name in above}
    upward = {
        str(path.relative_to(PACKAGE)): sorted(
            name for name in _imports(path) if ".".join(name.split(".")[:2]) in forbidden
        )
        for path in (PACKAGE / package).rglob("*.py")
    }
    assert {module: names for module, names in upward.items() if names} == {}


def test_the_command_line_sends_no_sql_of_its_own() -> None:
    # ``import sqlalchemy`` alone is allowed: --version prints its version
    sql = [path for path in (PACKAGE / "cli").rglob("*.py")
           if any(name.split(".")[0] == "sqlalchemy" for name in _imports(path, froms_only=True))]
    assert sql == []
