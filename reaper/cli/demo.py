"""``--demo``: the demo database's own table and columns, and a refusal of settings it cannot honour.

The demo cleans ``./reaper-demo.sqlite3``, whose table has the default name, columns and statuses.
A table, schema, preset, column or status setting that says otherwise (a flag, the environment,
``.env`` or the TOML file) would be silently ignored, so it is refused instead, named; one that
agrees with the demo is honoured as it is. The user's database URL is the one setting the demo
replaces without a word when it comes from the environment: the demo is what was asked for.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from reaper.cli.parser import UsageError
from reaper.database.demo import DEMO_FILE
from reaper.settings.model import Columns, Settings, Statuses, env_name, load_settings

DEMO_TABLE = "processing_tasks"
# The flags that name a setting the demo fixes, by setting
FLAGS = {"table": "--table", "preset": "--preset", "database_url": "--database-url"}


def demo_overrides() -> dict[str, Any]:
    """The settings the demo fixes: its database file in the working directory, its table and vocabulary."""
    return {
        "database_url": f"sqlite:///{Path.cwd() / DEMO_FILE}",
        "table": DEMO_TABLE,
        "table_schema": None,
        "columns": Columns(),
        "statuses": Statuses(),
        "preset": "",  # none
    }


def _disagreement(own: Settings) -> tuple[tuple[str, ...], Any] | None:
    """The first table setting of ``own`` that differs from the demo's: its location and value."""
    fixed = demo_overrides()
    for name in ("preset", "table", "table_schema"):  # a preset first: it sets the others
        if getattr(own, name) != (fixed[name] or None):
            return (name,), getattr(own, name)
    for group in ("columns", "statuses"):
        wanted = fixed[group].model_dump()
        for role, value in getattr(own, group).model_dump().items():
            if value != wanted[role]:
                return (group, role), value
    return None


def refuse_what_the_demo_cannot_honour(
    args: argparse.Namespace, overrides: dict[str, Any], config_file: Path | None
) -> None:
    """Raise ``UsageError`` naming the first setting ``--demo`` would have to ignore."""
    for name, flag in FLAGS.items():
        value = overrides.get(name)
        if value is not None and (name == "database_url" or value != demo_overrides()[name]):
            shown = "" if name == "database_url" else f" {value}"
            raise UsageError(f"--demo uses its own database and table; drop {flag}{shown}")
    # Everything but the demo's table settings, on the demo's file: what the user's sources say of them.
    own = load_settings({**overrides, "database_url": demo_overrides()["database_url"]}, config_file)
    disagreement = _disagreement(own)
    if disagreement is not None:
        location, value = disagreement
        raise UsageError(
            f"--demo uses its own table {DEMO_TABLE} and its columns: it cannot honour "
            f"{env_name(location)}={value!r} (from the environment, .env or the config file); "
            "unset it, or drop --demo"
        )
