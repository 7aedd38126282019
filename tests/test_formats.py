"""How values are shown: durations in each style people read them in, and values as JSON holds them."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from reaper.formats import (
    AGE,
    AT_A_GLANCE,
    EXACT_AGE,
    IN_DAYS,
    IN_HOURS,
    IN_MINUTES,
    DurationStyle,
    duration_text,
    json_value,
)
from reaper.settings.model import TaskTypeSettings


@pytest.mark.parametrize(
    "seconds, style, shown",
    [
        (1800, IN_HOURS, "0.5 h"),
        (36 * 3600, IN_HOURS, "36 h"),  # a limit reads as it was set, never as 1.5 d
        (0.1 * 3600, IN_HOURS, "0.1 h"),
        (7 * 86400, IN_DAYS, "7 d"),
        (600, IN_MINUTES, "10 min"),
    ],
)
def test_a_limit_reads_in_the_unit_it_was_set_in(seconds: float, style: DurationStyle, shown: str) -> None:
    assert duration_text(seconds, style) == shown


@pytest.mark.parametrize(
    "seconds, shown",
    [(30, "0 min"), (660, "11 min"), (3599, "60 min"), (3600, "1.0 h"), (30 * 3600, "30.0 h"), (72 * 3600, "3.0 d")],
)
def test_the_age_written_into_a_failed_row_reads_in_whole_minutes_then_hours_then_days(
    seconds: float, shown: str
) -> None:
    assert duration_text(seconds) == duration_text(seconds, AGE) == shown


@pytest.mark.parametrize("seconds, shown", [(1206, "20.1 min"), (55 * 3600, "55.0 h"), (100 * 3600, "4.2 d")])
def test_explain_shows_minutes_to_a_tenth(seconds: float, shown: str) -> None:
    assert duration_text(seconds, EXACT_AGE) == shown


@pytest.mark.parametrize(
    "seconds, shown",
    [(5, "5 s"), (119, "119 s"), (120, "2 min"), (3600, "60 min"), (7200, "2.0 h"), (80 * 3600, "3.3 d")],
)
def test_the_status_page_shows_seconds_for_two_minutes_and_minutes_for_two_hours(seconds: float, shown: str) -> None:
    assert duration_text(seconds, AT_A_GLANCE) == shown


def test_json_keeps_plain_values_and_spells_out_the_others() -> None:
    task_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert [json_value(value) for value in (7, 2.5, "a", True, None)] == [7, 2.5, "a", True, None]
    assert json_value(task_id) == "12345678-1234-5678-1234-567812345678"
    assert json_value(Decimal("10.50")) == "10.50" and json_value(Path("/var/archive")) == "/var/archive"


def test_json_of_task_type_settings_holds_only_what_was_set() -> None:
    settings = {"download": TaskTypeSettings(running_timeout_hours=0.5)}
    assert json_value(settings) == {"download": {"running_timeout_hours": 0.5}}
