"""Pausing on a busy server: the load limits (``NAME=VALUE`` specs), replica lag and the longest pause.

What each NAME reads on the server, and the pausing itself, are the engine's (``engine.throttle``);
here the settings are parsed and checked before anything connects.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from reaper.database.connection import safe_url
from reaper.database.dialects import dialect_of
from reaper.settings.database import parsable_url

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
    """Refuse names the database ``backend`` (SQLAlchemy's name) cannot have; a server checks its own."""
    dialect_of(backend).check_load_names([limit.name for limit in limits])


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


def _url_list(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class ThrottlingSettings(BaseModel):
    """The load limits and replicas a cleanup watches, as given (checked against the database by ``Settings``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_load: str | None = None  # NAME=VALUE[,NAME=VALUE...]: pause while any is above (see throttle)
    critical_load: str | None = None  # the same form: stop the run above it
    max_replica_lag_seconds: float | None = Field(None, gt=0, le=86400, allow_inf_nan=False, strict=True)
    # A list (TOML, JSON) or URLs separated by commas (environment)
    replica_urls: tuple[str, ...] | str = ()
    max_pause_seconds: float = Field(DEFAULT_MAX_PAUSE_SECONDS, gt=0, le=86400, allow_inf_nan=False, strict=True)

    @field_validator("max_load", "critical_load", mode="after")
    @classmethod
    def _load_spec(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_spec(value)
        return value.strip()

    @field_validator("replica_urls", mode="before")
    @classmethod
    def _url_list(cls, value: Any) -> Any:
        return _url_list(value)

    @field_validator("replica_urls", mode="after")
    @classmethod
    def _parsable_urls(cls, value: tuple[str, ...] | str) -> tuple[str, ...]:
        urls = _url_list(value)
        for url in urls:
            parsable_url(url)
        return tuple(urls)

    @property
    def replicas(self) -> tuple[str, ...]:
        """The replica URLs (``replica_urls``, always a tuple once validated)."""
        return self.replica_urls if isinstance(self.replica_urls, tuple) else (self.replica_urls,)

    @property
    def safe_replica_urls(self) -> list[str]:
        """The replica URLs with their passwords masked, for output."""
        return [safe_url(url) for url in self.replicas]

    @property
    def parsed(self) -> ThrottleSettings:
        """What the throttle watches: load limits, replica lag and the longest pause, parsed."""
        return ThrottleSettings(
            max_load=parse_spec(self.max_load) if self.max_load else (),
            critical_load=parse_spec(self.critical_load) if self.critical_load else (),
            max_replica_lag_seconds=self.max_replica_lag_seconds,
            replica_urls=self.replicas,
            max_pause_seconds=self.max_pause_seconds,
        )
