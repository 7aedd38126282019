"""How values are shown: spans of time as people read them, and any value as JSON holds it.

One formatter of durations serves the limits as configured (``24 h``, ``10 min``), the age written
into a failed row (``30.0 h``), ``--explain`` (``20.1 min``) and the status page (``45 s``), each
with the style its readers expect; one coercion to JSON serves ``--json``, ``--explain --json``
and the audit line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

UNIT_SECONDS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
DAYS_FROM_HOURS = 72  # a span of 72 hours or more reads in days


@dataclass(frozen=True)
class DurationStyle:
    """How a span of time reads: in one unit, or in the unit its length calls for (then where each starts)."""

    unit: str | None = None  # a limit as configured reads in the unit it was set in: ``36 h``, not ``1.5 d``
    seconds_below: float = 0.0  # a shorter span reads in seconds (0: never)
    minutes_below: float = 3600.0  # a shorter span reads in minutes; a longer one in hours, then days
    minute_digits: int = 0


AGE = DurationStyle()  # the age written into a failed row: ``11 min``, ``30.0 h``, ``4.2 d``
EXACT_AGE = DurationStyle(minute_digits=1)  # --explain: ``20.1 min``
AT_A_GLANCE = DurationStyle(seconds_below=120, minutes_below=7200)  # the status page: ``45 s``, ``90 min``
IN_MINUTES, IN_HOURS, IN_DAYS = DurationStyle("min"), DurationStyle("h"), DurationStyle("d")  # limits


def duration_text(seconds: float, style: DurationStyle = AGE) -> str:
    """A span of time as people read it: ``10 min``, ``0.5 h``, ``30.0 h``, ``3.3 d``, as ``style`` says."""
    if style.unit is not None:
        return f"{seconds / UNIT_SECONDS[style.unit]:g} {style.unit}"
    if seconds < style.seconds_below:
        return f"{seconds:.0f} s"
    if seconds < style.minutes_below:
        return f"{seconds / 60:.{style.minute_digits}f} min"
    if seconds < DAYS_FROM_HOURS * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"  # one division: a tie (3.45 d) rounds as its decimal reads


def json_value(value: Any) -> Any:
    """``value`` as JSON holds it: a number, text, a boolean or null as it is, a dict item by item, a
    settings model as its fields, anything else (a UUID, a Decimal, a path) as its text."""
    if isinstance(value, dict):  # task types: name -> their own settings
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_none=True)
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)
