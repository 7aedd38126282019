"""The ``reaper`` command's flags, grouped by what a person wants, with a suggestion for a mistyped one."""

from __future__ import annotations

import argparse
import difflib
import math
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

import sqlalchemy

from reaper import __version__
from reaper.database.demo import DEMO_FILE
from reaper.policy.catalog import STANDARD_SPECS
from reaper.policy.spec import Limit
from reaper.settings.batching import MAX_ID_LIST
from reaper.settings.database import DEFAULT_DATABASE_URL
from reaper.settings.policies import MAX_DAYS, UNIT_MOST
from reaper.settings.presets import PRESETS
from reaper.settings.throttling import parse_spec

EXAMPLES = """\
examples:
  reaper --demo --once --dry-run    what a cleanup would do, on a demo database
  reaper --demo --explain 14657     why the demo's row 14657 is a zombie
  reaper --stats-only               your table's statistics, zombies included
  reaper --check-indexes            the indexes a cleanup needs (5: one missing)
  reaper --once --dry-run --json    a dry run as one JSON document
  reaper --once --archive jsonl     clean now, every deleted row kept in a file
  reaper --force-status failure --older-than 3
                                    delete the failures older than 3 days
  reaper --dry-run                  the daemon in shadow mode: dry runs only
  reaper                            the daemon: zombies failed every 5 minutes,
                                    old rows deleted every night, metrics

Settings also come from REAPER_* environment variables, ./.env and a TOML
file (--config); flags win over them.
Exit codes: 0 done, 1 failed, 2 bad usage or configuration, 3 another reaper
holds the table's lock, 4 a large deletion not confirmed, 5 a recommended
index is missing (--check-indexes), 130 interrupted.
Documentation: docs/command-line.md, the "Command line" page of the docs site.
"""

# argparse's own words for flags it does not know (Python 3.11 to 3.13)
UNKNOWN_FLAGS = re.compile(r"^unrecognized arguments: (.*)$")


class UsageError(Exception):
    """The command line itself is wrong."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message + self._suggestion(message))

    def _suggestion(self, message: str) -> str:
        """``; did you mean --dry-run?`` for the first unknown flag that is close to a known one."""
        unknown = UNKNOWN_FLAGS.match(message)
        if not unknown:
            return ""
        known = [flag for action in self._actions for flag in action.option_strings if flag.startswith("--")]
        for word in unknown.group(1).split():
            flag = word.split("=", 1)[0]
            close = difflib.get_close_matches(flag, known, n=1) if flag.startswith("--") else []
            if close:
                return f"; did you mean {close[0]}?"
        return ""


def _number(low: float, at_least: bool = False, high: float = math.inf, unit: str = "", whole: bool = False) -> Any:
    """Return an argparse type: a number above ``low`` (or at least it) and at most ``high``."""

    def parse(text: str) -> float:
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {'whole ' if whole else ''}number, got {text!r}") from None
        if math.isnan(value) or (value < low if at_least else value <= low):
            raise argparse.ArgumentTypeError(
                f"must be {'at least' if at_least else 'greater than'} {low:g}, got {text!r}"
            )
        if value > high or math.isinf(value):
            raise argparse.ArgumentTypeError(f"must be at most {high:g}{unit}, got {text!r}")
        return value

    return parse


_days = _number(0, high=MAX_DAYS, unit=" days")
_seconds = _number(0)
_pause = _number(0, at_least=True, high=3600, unit=" seconds")
_batch_size = _number(1, at_least=True, whole=True, high=MAX_ID_LIST, unit=" rows")
_batch_time = _number(0, at_least=True, high=60, unit=" seconds")
_day_of_seconds = _number(0, high=86400, unit=" seconds")


def _load_spec(text: str) -> str:
    """An argparse type: a load SPEC, NAME=VALUE[,NAME=VALUE...] (names are checked against the database later)."""
    try:
        parse_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def version_text() -> str:
    """What ``--version`` prints: reaper's version and those of Python, SQLAlchemy and the drivers."""
    drivers = []
    for distribution in ("PyMySQL", "psycopg"):
        try:
            drivers.append(f"{distribution} {metadata.version(distribution)}")
        except metadata.PackageNotFoundError:
            drivers.append(f"{distribution} not installed")
    return (
        f"reaper {__version__} (Python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, "
        f"{', '.join(drivers)})"
    )


def _modes(parser: argparse.ArgumentParser) -> None:
    modes = parser.add_argument_group("modes", "One at a time (--force-status too); none of them: the daemon.")
    modes.add_argument("--once", action="store_true", help="run the policies once and exit")
    modes.add_argument("--stats-only", action="store_true", help="print the table's statistics; write nothing")
    modes.add_argument(
        "--explain", metavar="ID", help="say which policy and threshold apply to row ID, and what a run would do"
    )
    modes.add_argument("--check-indexes", action="store_true",
                       help="report the recommended indexes; change nothing (exit 5 when one is missing)")
    modes.add_argument("--restore", metavar="FILE", type=Path, help="put the rows of an archive file back")
    clean = parser.add_argument_group("what to clean")
    clean.add_argument("--table", metavar="NAME", help="table name (default processing_tasks)")
    clean.add_argument(
        "--preset", metavar="NAME", choices=tuple(PRESETS),
        help=f"defaults for a known job table: {', '.join(PRESETS)} (explicit settings win)",
    )
    clean.add_argument("--force-status", metavar="S",
                       help="a mode: clean only status S, whatever its thresholds (needs --older-than)")
    clean.add_argument("--older-than", metavar="D", type=_days, help="age in days for --force-status")


def threshold_flags() -> dict[str, Limit]:
    """The age limit each policy's flag sets (``--running-timeout``: ``running_timeout_hours``), from the specs."""
    return {spec.age.flag: spec.age for spec in STANDARD_SPECS if spec.age.flag}


def _thresholds(parser: argparse.ArgumentParser) -> None:
    limits = parser.add_argument_group("thresholds", "How old a row must be for its policy.")
    for flag, limit in threshold_flags().items():
        unit = limit.unit.value
        limits.add_argument(flag, dest=limit.key, metavar=unit[0].upper(), help=f"{unit} (default {limit.default:g})",
                            type=_number(0, high=UNIT_MOST[limit.unit], unit=f" {unit}"))


def _batching(parser: argparse.ArgumentParser) -> None:
    load = parser.add_argument_group(
        "batching and load", "How fast a run writes; when it pauses or stops for the server's load."
    )
    load.add_argument("--batch-size", metavar="N", type=_batch_size,
                      help="the most rows per transaction (default: 1000 at first, then adapted to --batch-time)")
    load.add_argument("--batch-time", metavar="S", type=_batch_time,
                      help="target seconds per write transaction: slower batches shrink (default 0.25; 0 fixed)")
    load.add_argument("--sleep", metavar="S", type=_pause, help="seconds to pause between batches")
    load.add_argument("--max-runtime", metavar="S", type=_seconds, help="stop a run after S seconds")
    load.add_argument("--max-load", metavar="SPEC", type=_load_spec,
                      help="NAME=VALUE[,...]: pause while any is above (e.g. Threads_running=25)")
    load.add_argument("--critical-load", metavar="SPEC", type=_load_spec,
                      help="NAME=VALUE[,...]: stop the run, writing nothing more, while any is above")
    load.add_argument("--max-replica-lag", metavar="S", type=_day_of_seconds,
                      help="pause while a replica lags more than S seconds, or shows no lag")
    load.add_argument("--replica", metavar="URL", action="append",
                      help="a replica to watch (repeatable; PostgreSQL without one: the primary's standbys)")
    load.add_argument("--max-pause", metavar="S", type=_day_of_seconds,
                      help="stop a run that has paused S seconds in a row (default 600)")


def _safety(parser: argparse.ArgumentParser) -> None:
    safety = parser.add_argument_group("safety")
    safety.add_argument("--dry-run", action="store_true",
                        help="select and count, write nothing (the daemon: shadow mode)")
    safety.add_argument(
        "--yes", action="store_true", help="confirm a run that deletes more than REAPER_CONFIRM_ABOVE rows"
    )
    safety.add_argument("--archive", choices=("jsonl", "table", "none"), help="keep deleted rows (default none)")
    safety.add_argument(
        "--archive-dir", metavar="DIR", type=Path, help="where jsonl archives go (default reaper-archive)"
    )


def _output(parser: argparse.ArgumentParser) -> None:
    output = parser.add_argument_group("output")
    output.add_argument("--json", action="store_true", help="print one JSON document instead of text (one-shot modes)")
    levels = output.add_mutually_exclusive_group()
    levels.add_argument("--log-level", metavar="LEVEL",
                        help="DEBUG, INFO, WARNING, ERROR (default: INFO; WARNING on the terminal of a one-shot mode)")
    levels.add_argument("-v", "--verbose", action="count", default=0,
                        help="log INFO to the terminal (-vv: DEBUG), as --log-level does")
    output.add_argument("--log-file", metavar="FILE", type=Path, help="also log to FILE, rotated")
    output.add_argument("--log-json", action="store_true", default=None, help="log JSON lines")
    output.add_argument("--version", action="version", version=version_text(),
                        help="print the versions of reaper, Python, SQLAlchemy and the drivers")


def _database(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("database and settings")
    where.add_argument("--database-url", metavar="URL", help=f"SQLAlchemy URL (default {DEFAULT_DATABASE_URL})")
    where.add_argument("--demo", action="store_true",
                       help=f"use (and fill) the demo database ./{DEMO_FILE}, its own table and columns")
    where.add_argument("--config", metavar="FILE", type=Path, help="TOML settings file")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``reaper`` command."""
    parser = _Parser(
        prog="reaper",
        description="Find and clean zombie and expired rows in a background-job table.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for add_group in (_modes, _thresholds, _batching, _safety, _output, _database):
        add_group(parser)
    return parser
