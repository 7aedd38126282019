"""The only place that reads the wall clock; everything else receives ``now`` as a parameter."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)
