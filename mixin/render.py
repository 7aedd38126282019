"""Render the reaper mixin into the files the repository ships, or into a folder of your own.

    python mixin/render.py                                   # alerts/, grafana/, deploy/kubernetes/ here
    python mixin/render.py --config mine.jsonnet --output-dir out/
    python mixin/render.py --check                           # exit 1 if a shipped file differs

``--config`` names a Jsonnet (or JSON) file holding an object of settings to change; nested
objects are merged into those of mixin/config.libsonnet, for example
``{ selector: 'job="tasks-reaper"', alerts: { ReaperPendingBacklog: { count: 5000 } } }``.
A setting the mixin does not have is an error, so that a misspelt one cannot leave the default.
Needs the ``jsonnet`` package (``pip install jsonnet``, in reaper's ``test`` extra).
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

import _jsonnet
import yaml

MIXIN = Path(__file__).resolve().parent
ROOT = MIXIN.parent
RULES = Path("alerts/reaper-rules.yml")
DASHBOARD = Path("grafana/reaper-dashboard.json")
PROMETHEUS_RULE = Path("deploy/kubernetes/prometheusrule.yaml")

# The settings given with --config are merged into the mixin's own (std.mergePatch: nested objects merge).
SNIPPET = """
local mixin = import 'mixin.libsonnet';
local config = std.mergePatch(mixin._config, std.extVar('overrides'));  // a local: merged once
local rendered = mixin + { _config:: config };
{
  selector: rendered._config.selector,
  rules: rendered.prometheusAlerts,
  dashboard: rendered.grafanaDashboards['reaper-dashboard.json'],
  prometheusRule: rendered.kubernetesPrometheusRule,
}
"""

RULES_HEADER = """\
# Prometheus alerting rules for the reaper daemon. Generated from mixin/ by `python mixin/render.py`:
# change mixin/config.libsonnet (or render with a --config of your own), never this file.
# Every selector names {selector}; each alert's runbook_url points at its section of docs/runbook.md,
# and docs/monitoring.md explains the alerts. deploy/kubernetes/prometheusrule.yaml holds the same groups.
"""

PROMETHEUS_RULE_HEADER = """\
# The reaper's alerting rules for the Prometheus Operator (kube-prometheus-stack): the groups of
# alerts/reaper-rules.yml. Generated from mixin/ by `python mixin/render.py`, never edited by hand.
# The rules select {selector}, the job servicemonitor.yaml gives the daemon. The release label must
# match your Prometheus's ruleSelector (kube-prometheus-stack's default: release: <the Helm release>).
"""

# Prometheus's documentation order, rather than Jsonnet's alphabetical one.
RULE_KEYS = ("alert", "expr", "for", "labels", "annotations")
ANNOTATION_KEYS = ("summary", "description", "runbook_url", "dashboard_url")


class _Dumper(yaml.SafeDumper):
    """Block scalars for multi-line expressions, and lists indented under their key."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def _ordered(rule: dict[str, Any]) -> dict[str, Any]:
    ordered = {key: rule[key] for key in RULE_KEYS if key in rule}
    ordered["annotations"] = {key: rule["annotations"][key] for key in ANNOTATION_KEYS if key in rule["annotations"]}
    return ordered


def _groups(rules: dict[str, Any]) -> dict[str, Any]:
    return {"groups": [{"name": g["name"], "rules": [_ordered(r) for r in g["rules"]]} for g in rules["groups"]]}


def _yaml(header: str, document: dict[str, Any]) -> str:
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True)
    return header + body


class RenderError(Exception):
    """A settings file that cannot be used, in one line."""


def _unknown(overrides: Any, defaults: Any, where: str = "") -> list[str]:
    """The dotted names in ``overrides`` that ``defaults`` lacks."""
    if not isinstance(overrides, dict) or not isinstance(defaults, dict):
        return []
    found: list[str] = []
    for key, value in overrides.items():
        name = f"{where}.{key}" if where else key
        found += _unknown(value, defaults[key], name) if key in defaults else [name]
    return found


def _overrides(config: Path | None) -> dict[str, Any]:
    if config is None:
        return {}
    try:
        overrides = json.loads(_jsonnet.evaluate_file(str(config), jpathdir=[str(MIXIN)]))
    except RuntimeError as exc:  # Jsonnet's message: its first line says what and where
        raise RenderError(str(exc).strip().splitlines()[0]) from None
    if not isinstance(overrides, dict):
        raise RenderError(f"{config}: expected an object of settings")
    defaults = json.loads(_jsonnet.evaluate_snippet("defaults", "(import 'config.libsonnet')._config",
                                                    jpathdir=[str(MIXIN)]))
    unknown = _unknown(overrides, defaults)
    if unknown:
        raise RenderError(f"{config}: unknown setting {', '.join(unknown)} (see mixin/config.libsonnet)")
    return overrides


def render(config: Path | None = None) -> dict[Path, str]:
    """Return the text of each rendered file, by its path relative to the output folder."""
    overrides = json.dumps(_overrides(config))
    out = json.loads(_jsonnet.evaluate_snippet(
        "render.py", SNIPPET, jpathdir=[str(MIXIN)], ext_codes={"overrides": overrides}
    ))
    selector = out["selector"] or "no selector"
    prometheus_rule = {**out["prometheusRule"], "spec": _groups(out["prometheusRule"]["spec"])}
    return {
        RULES: _yaml(RULES_HEADER.format(selector=selector), _groups(out["rules"])),
        DASHBOARD: json.dumps(out["dashboard"], indent=2, ensure_ascii=False) + "\n",
        PROMETHEUS_RULE: _yaml(PROMETHEUS_RULE_HEADER.format(selector=selector), prometheus_rule),
    }


def _differences(files: dict[Path, str], folder: Path) -> list[str]:
    found = []
    for path, text in files.items():
        shipped = (folder / path).read_text(encoding="utf-8") if (folder / path).exists() else ""
        if shipped != text:
            diff = difflib.unified_diff(shipped.splitlines(), text.splitlines(), str(path), "rendered", lineterm="")
            found.append("\n".join(list(diff)[:40]))
    return found


def main(argv: list[str] | None = None) -> int:
    """Render (or check) the files; return the exit code."""
    parser = argparse.ArgumentParser(description="Render the reaper mixin (alerts and dashboard).")
    parser.add_argument("--config", type=Path, help="a Jsonnet or JSON file of settings to change")
    parser.add_argument("--output-dir", type=Path, default=ROOT, help="where to write (default: this repository)")
    parser.add_argument("--check", action="store_true", help="compare with the files there instead of writing")
    args = parser.parse_args(argv)
    try:
        files = render(args.config)
    except RenderError as exc:
        print(f"render.py: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # the jsonnet module's error: a setting of the wrong kind, for one
        print(f"render.py: error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    if args.check:
        differences = _differences(files, args.output_dir)
        for difference in differences:
            print(difference)
        return 1 if differences else 0
    for path, text in files.items():
        (args.output_dir / path).parent.mkdir(parents=True, exist_ok=True)
        (args.output_dir / path).write_text(text, encoding="utf-8")
        print(f"wrote {args.output_dir / path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
