"""The database: where it is, the zone of its naive timestamps, and how long a statement may wait."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.engine import URL, make_url

from reaper.database.connection import parse_url, safe_url

DEFAULT_DATABASE_URL = "sqlite:///reaper.db"


def parsable_url(value: str) -> str:
    """Return ``value`` if it is a database URL; else raise ``ValueError`` without showing it (a password)."""
    try:
        url = parse_url(value)
    except ValueError:
        raise ValueError("not a database URL (expected dialect+driver://user:password@host/db)") from None
    if url.host and "@" in url.host:  # the password's own "@" ends it early: its tail would show as the host
        raise ValueError("the URL has more than one '@': write an '@' in the password or user name as %40")
    return value


def known_zone(value: str) -> str:
    """Return ``value`` if it names a time zone; else raise ``ValueError``."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


class DatabaseSettings(BaseModel):
    """The database URL, the zone of timestamps stored without one, and the session's time limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = DEFAULT_DATABASE_URL
    database_timezone: str = "UTC"
    lock_timeout_seconds: float = Field(5.0, gt=0, le=3600, allow_inf_nan=False, strict=True)
    statement_timeout_seconds: float = Field(60.0, gt=0, le=86400, allow_inf_nan=False, strict=True)

    @field_validator("database_url", mode="after")
    @classmethod
    def _parsable_url(cls, value: str) -> str:
        return parsable_url(value)

    @field_validator("database_timezone", mode="after")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_zone(value)

    @property
    def url(self) -> URL:
        """The database URL, parsed."""
        return make_url(self.database_url)

    @property
    def safe_url(self) -> str:
        """The database URL with its passwords masked (in the user part or the query), for output."""
        return safe_url(self.database_url)
