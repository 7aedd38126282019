"""A mistyped setting is refused with the one it probably meant: a variable for a variable, a key for a key."""

from __future__ import annotations

from pathlib import Path

import pytest

from reaper.errors import ConfigError
from reaper.settings.model import load_settings


def refusal(**environment: str) -> str:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        with pytest.raises(ConfigError) as refused:
            load_settings()
    return str(refused.value)


@pytest.mark.parametrize(
    "variable, meant",
    [
        ("REAPER_RUNNING_TIMEOUT", "REAPER_RUNNING_TIMEOUT_HOURS"),
        ("REAPER_SUCESS_RETENTION_DAYS", "REAPER_SUCCESS_RETENTION_DAYS"),
        ("reaper_batchsize", "REAPER_BATCH_SIZE"),
        ("REAPER_COLUMNS__FINISHED", "REAPER_COLUMNS__FINISHED_AT"),
        ("REAPER_STATUSES__FAILED", "REAPER_STATUSES__FAILURE"),
    ],
)
def test_a_mistyped_variable_is_refused_with_the_variable_it_probably_meant(variable: str, meant: str) -> None:
    message = refusal(**{variable: "12"})
    assert variable.upper() in message and message.endswith(f"{meant}?)")


def test_a_mistyped_nested_variable_is_named_as_a_variable_and_as_a_key() -> None:
    message = refusal(REAPER_COLUMNS__FINISHED="done_at")
    assert message.endswith("(did you mean columns.finished_at, REAPER_COLUMNS__FINISHED_AT?)")


def test_a_variable_close_to_no_setting_gets_no_suggestion() -> None:
    message = refusal(REAPER_FROBNICATE="1")
    assert message == "unknown setting REAPER_FROBNICATE in the environment"


@pytest.mark.parametrize(
    "toml, meant",
    [
        ("running_timeout = 12\n", "running_timeout_hours, REAPER_RUNNING_TIMEOUT_HOURS"),
        ('[columns]\nfinshed_at = "done_at"\n', "columns.finished_at, REAPER_COLUMNS__FINISHED_AT"),
        ("[task_types.download]\nrunning_timeout = 1\n", "task_types.download.running_timeout_hours"),
    ],
)
def test_a_mistyped_config_key_is_refused_with_the_key_it_probably_meant(
    tmp_path: Path, toml: str, meant: str
) -> None:
    config = tmp_path / "reaper.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError) as refused:
        load_settings(config_file=config)
    assert f"(did you mean {meant}?)" in str(refused.value) and "reaper.toml" in str(refused.value)
