"""MkDocs hook: write the reference pages from the code before every build, so they cannot drift.

- ``reference/settings.md`` from the settings model (every ``REAPER_*`` variable, its TOML key, type,
  default and bounds);
- ``reference/flags.md`` from the argument parser (every flag, its group, its help);
- ``reference/metrics.md`` from what the daemon's registry exports (every metric, its type, its
  help and its labels).

``python docs/hooks.py`` writes them without building the site.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

HEADER = "<!-- Written by docs/hooks.py from the code at every docs build: edit the code, not this page. -->\n\n"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _bounds(field: Any) -> str:
    found = []
    for item in field.metadata:
        for name, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(item, name, None) is not None:
                found.append(f"{sign} {getattr(item, name):g}")
    return ", ".join(found)


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("pathlib.", "")


def _default(field: Any) -> str:
    if field.default_factory is not None:
        return "(empty)"
    default = field.default
    if default is None:
        return "(none)"
    if hasattr(default, "model_dump"):
        return "(see the nested keys)"
    return f"`{default}`"


def settings_page() -> str:
    """The settings reference: one row per setting, nested ones by their ``__`` name."""
    from reaper.settings.model import ENV_PREFIX, setting_fields

    rows = []
    for name, field in setting_fields().items():
        annotation = field.annotation
        nested = getattr(annotation, "model_fields", None)
        if nested:
            for key, inner in nested.items():
                rows.append((f"{ENV_PREFIX}{name.upper()}__{key.upper()}", f"[{name}] {key}",
                             _type_name(inner.annotation), _default(inner), _bounds(inner)))
            continue
        rows.append((f"{ENV_PREFIX}{name.upper()}", name, _type_name(annotation), _default(field), _bounds(field)))
    lines = ["# Settings reference", "", HEADER.strip(), "",
             "Each setting is a `REAPER_*` environment variable, a line of `.env`, a key of the TOML file "
             "(`--config`), and for many a flag (see [the flags](flags.md)). What each does: "
             "[Configuration](../configuration.md).", "",
             "| variable | TOML key | type | default | bounds |", "|---|---|---|---|---|"]
    lines += [f"| `{env}` | `{key}` | {_cell(kind)} | {_cell(default)} | {_cell(bounds)} |"
              for env, key, kind, default, bounds in rows]
    return "\n".join(lines) + "\n"


def flags_page() -> str:
    """The flags reference, in the parser's groups."""
    from reaper.cli.command import build_parser

    parser = build_parser()
    lines = ["# Command-line flags", "", HEADER.strip(), "", "What they are for: [Command line](../command-line.md).",
             ""]
    for group in parser._action_groups:  # argparse keeps its groups only there
        actions = [action for action in group._group_actions if action.option_strings]
        if not actions:
            continue
        lines += [f"## {group.title}", "", "| flag | meaning |", "|---|---|"]
        for action in actions:
            flags = ", ".join(f"`{flag}`" + (f" `{action.metavar}`" if action.metavar else "")
                              for flag in action.option_strings)
            lines.append(f"| {flags} | {_cell(action.help or '')} |")
        lines.append("")
    return "\n".join(lines)


def metrics_page() -> str:
    """The metrics reference, from what a fresh daemon's registry exports."""
    from prometheus_client import CollectorRegistry, Counter

    from reaper import __version__
    from reaper.daemon.metrics import ReaperMetrics

    registry = CollectorRegistry()
    metrics = ReaperMetrics(registry, __version__, 50)
    # A family with no sample yet shows no labels: read them from the counters and gauge families.
    declared = {counter._name: set(counter._labelnames) for counter in vars(metrics).values()
                if isinstance(counter, Counter)}
    for family in registry.collect():
        declared.setdefault(family.name, set()).update(getattr(family, "_labelnames", ()))
    lines = ["# Metrics reference", "", HEADER.strip(), "",
             "Every series also carries `table`. What to watch and the dashboard: [Monitoring](../monitoring.md).",
             "", "| metric | type | labels | help |", "|---|---|---|---|"]
    for family in sorted(registry.collect(), key=lambda family: family.name):
        suffix = "_total" if family.type == "counter" else ""
        found = {label for sample in family.samples for label in sample.labels} | declared.get(family.name, set())
        labels = sorted(found - {"table", "le"})
        lines.append(f"| `{family.name}{suffix}` | {family.type} | {', '.join(f'`{x}`' for x in labels)} "
                     f"| {_cell(family.documentation)} |")
    return "\n".join(lines) + "\n"


def generate(docs_dir: Path) -> dict[str, str]:
    """Write the reference pages into ``docs_dir/reference`` and return them by file name."""
    pages = {"settings.md": settings_page(), "flags.md": flags_page(), "metrics.md": metrics_page()}
    folder = docs_dir / "reference"
    folder.mkdir(exist_ok=True)
    for name, text in pages.items():
        (folder / name).write_text(text)
    # The changelog lives at the top of the repository, where people look for it; the site shows it too.
    (docs_dir / "changelog.md").write_text((REPO / "CHANGELOG.md").read_text())
    return pages


def on_pre_build(config: Any) -> None:
    """MkDocs: write the reference pages before the files are collected."""
    generate(Path(config["docs_dir"]))


if __name__ == "__main__":
    parsed = argparse.ArgumentParser(description=__doc__).parse_args()
    generate(REPO / "docs")
