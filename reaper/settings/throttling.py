"""Pausing on a busy server: the load limits (``NAME=VALUE`` specs), replica lag and the longest pause.

What each NAME reads on the server, and the pausing itself, are the engine's (``engine.throttle``);
here the settings are parsed and checked before anything connects.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from reaper.database.load import POSTGRES_LOAD_NAMES

DEFAULT_MAX_PAUSE_SECONDS = 600.0
SPEC_FORM = "NAME=VALUE[,NAME=VALUE...]"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class LoadLimit:
    """One ``NAME=VALUE`` of a load SPEC."""

    name: str
    value: float


def parse_spec(spec: str) -> tuple[LoadLimit, ...]:
    """Parse ``NAME=VALUE[,NAME=VALUE...]``; raise ``ValueError`` saying what is wrong."""
    limits: list[LoadLimit] = []
    for part in spec.split(","):
        name, equals, value = (piece.strip() for piece in part.partition("="))
        if not equals or not _NAME.match(name):
            raise ValueError(f"expected {SPEC_FORM}, got {part.strip()!r}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{name}: the value must be a number, got {value!r}") from None
        if not math.isfinite(number) or number < 0:
            raise ValueError(f"{name}: the value must be a number of at least 0, got {value!r}")
        if any(limit.name.lower() == name.lower() for limit in limits):
            raise ValueError(f"{name} is given twice")
        limits.append(LoadLimit(name, number))
    return tuple(limits)


def check_names(limits: Sequence[LoadLimit], backend: str) -> None:
    """Refuse names the database cannot have (MySQL's status variables are checked on the server)."""
    if backend == "sqlite":
        raise ValueError("SQLite has no server load to read")
    if backend == "postgresql":
        for limit in limits:
            if limit.name not in POSTGRES_LOAD_NAMES:
                known = ", ".join(POSTGRES_LOAD_NAMES)
                raise ValueError(f"unknown NAME {limit.name!r} on PostgreSQL (known: {known})")
    elif backend != "mysql":
        raise ValueError(f"load limits are read on MySQL, MariaDB and PostgreSQL, not {backend}")


@dataclass(frozen=True)
class ThrottleSettings:
    """What the throttle watches, parsed from the settings."""

    max_load: tuple[LoadLimit, ...] = ()
    critical_load: tuple[LoadLimit, ...] = ()
    max_replica_lag_seconds: float | None = None
    replica_urls: tuple[str, ...] = ()
    max_pause_seconds: float = DEFAULT_MAX_PAUSE_SECONDS

    @property
    def enabled(self) -> bool:
        """Whether anything is watched at all."""
        return bool(self.max_load or self.critical_load or self.max_replica_lag_seconds is not None)

