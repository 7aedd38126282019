"""Settings: defaults, precedence of flags, environment, .env and TOML, and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from reaper.errors import ConfigError
from reaper.settings.model import Settings, load_settings


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_seed_thresholds() -> None:
    settings = load_settings()
    assert (
        settings.running_timeout_hours,
        settings.pending_timeout_hours,
        settings.failure_retention_days,
        settings.success_retention_days,
        settings.batch_size,
        settings.table,
    ) == (24, 2, 7, 30, 1000, "processing_tasks")
    assert settings.columns.finished_at == "completed_at" and settings.columns.error == "error_message"
    assert settings.database_url == "sqlite:///reaper.db"


def test_flags_override_environment_which_overrides_dotenv_which_overrides_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_toml(
        tmp_path / "reaper.toml",
        "running_timeout_hours = 1\npending_timeout_hours = 1\n"
        "failure_retention_days = 1\nsuccess_retention_days = 1\n",
    )
    Path(".env").write_text("REAPER_PENDING_TIMEOUT_HOURS=2\nREAPER_FAILURE_RETENTION_DAYS=2\n")
    monkeypatch.setenv("REAPER_FAILURE_RETENTION_DAYS", "3")
    monkeypatch.setenv("REAPER_SUCCESS_RETENTION_DAYS", "3")
    settings = load_settings({"success_retention_days": 4}, config)
    assert (
        settings.running_timeout_hours,
        settings.pending_timeout_hours,
        settings.failure_retention_days,
        settings.success_retention_days,
    ) == (1, 2, 3, 4)


def test_config_file_can_be_named_in_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_toml(tmp_path / "r.toml", 'table = "jobs"\n[columns]\nfinished_at = "done_at"\nerror = ""\n')
    monkeypatch.setenv("REAPER_CONFIG_FILE", str(config))
    settings = load_settings()
    assert settings.table == "jobs" and settings.columns.finished_at == "done_at" and settings.columns.error is None


def test_nested_environment_variables_set_columns_and_statuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REAPER_COLUMNS__STARTED_AT", "began")
    monkeypatch.setenv("REAPER_COLUMNS__TASK_TYPE", "")
    monkeypatch.setenv("REAPER_STATUSES__RUNNING", "in_progress")
    settings = load_settings()
    assert settings.columns.started_at == "began" and settings.columns.task_type is None
    assert settings.statuses.running == "in_progress" and settings.statuses.pending == "pending"


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_a_threshold_that_is_not_a_positive_number_is_rejected(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("REAPER_RUNNING_TIMEOUT_HOURS", value)
    with pytest.raises(ConfigError, match="REAPER_RUNNING_TIMEOUT_HOURS"):
        load_settings()


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "often"])
def test_a_totals_interval_that_is_not_a_positive_number_is_rejected(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("REAPER_TOTALS_INTERVAL_SECONDS", value)
    with pytest.raises(ConfigError, match="invalid setting REAPER_TOTALS_INTERVAL_SECONDS"):
        load_settings()


def test_the_totals_interval_defaults_to_ten_minutes_and_accepts_a_fraction(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().totals_interval_seconds == 600
    monkeypatch.setenv("REAPER_TOTALS_INTERVAL_SECONDS", "0.5")
    assert load_settings().totals_interval_seconds == 0.5


def test_zombies_are_rescued_every_five_minutes_and_a_failed_cleanup_retried_for_six_hours_by_default() -> None:
    settings = load_settings()
    assert (settings.rescue_interval_seconds, settings.cleanup_retry_hours) == (300, 6)


def test_a_rescue_interval_of_zero_turns_rescues_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REAPER_RESCUE_INTERVAL_SECONDS", "0")
    assert load_settings().rescue_interval_seconds == 0


@pytest.mark.parametrize("value", ["5", "-1", "nan", "often"])
def test_a_rescue_interval_that_would_hammer_the_database_or_is_no_number_is_rejected(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("REAPER_RESCUE_INTERVAL_SECONDS", value)
    with pytest.raises(ConfigError, match="invalid setting REAPER_RESCUE_INTERVAL_SECONDS"):
        load_settings()


@pytest.mark.parametrize("value", ["-1", "25", "inf"])
def test_a_cleanup_retry_window_outside_a_day_is_rejected(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("REAPER_CLEANUP_RETRY_HOURS", value)
    with pytest.raises(ConfigError, match="invalid setting REAPER_CLEANUP_RETRY_HOURS"):
        load_settings()


@pytest.mark.parametrize("role", ["ID", "STATUS", "CREATED_AT"])
def test_a_required_column_cannot_be_emptied(monkeypatch: pytest.MonkeyPatch, role: str) -> None:
    monkeypatch.setenv(f"REAPER_COLUMNS__{role}", "")
    with pytest.raises(ConfigError, match=f"REAPER_COLUMNS__{role}: this column is required"):
        load_settings()


def test_an_unknown_reaper_variable_is_an_error_not_a_silent_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REAPER_RUNING_TIMEOUT_HOURS", "12")
    with pytest.raises(ConfigError, match="unknown setting REAPER_RUNING_TIMEOUT_HOURS"):
        load_settings()


def test_an_unknown_toml_key_is_an_error(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "r.toml", "sucess_retention_days = 3\n")
    with pytest.raises(ConfigError, match="unknown setting sucess_retention_days"):
        load_settings(config_file=config)


def test_an_invalid_toml_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "broken.toml", "running_timeout_hours = = 3\n")
    with pytest.raises(ConfigError, match="broken.toml.*not valid TOML"):
        load_settings(config_file=config)


def test_a_toml_file_that_is_not_utf8_is_an_error_naming_the_file(tmp_path: Path) -> None:
    config = tmp_path / "latin1.toml"
    config.write_bytes("table = 'tâches'\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="latin1.toml.*not UTF-8.*line 1"):
        load_settings(config_file=config)


def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(config_file=tmp_path / "nope.toml")


def test_two_roles_cannot_share_one_status_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REAPER_STATUSES__FAILURE", "SUCCESS")
    with pytest.raises(ConfigError, match="share the value"):
        load_settings()


def test_an_unknown_time_zone_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REAPER_DATABASE_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ConfigError, match="REAPER_DATABASE_TIMEZONE: unknown time zone"):
        load_settings()


@pytest.mark.parametrize("size", ["0", "10001"])
def test_batch_size_out_of_range_is_rejected(monkeypatch: pytest.MonkeyPatch, size: str) -> None:
    monkeypatch.setenv("REAPER_BATCH_SIZE", size)
    with pytest.raises(ConfigError, match="REAPER_BATCH_SIZE"):
        load_settings()


def test_an_unparsable_database_url_is_rejected_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REAPER_DATABASE_URL", "no url at all with s3cret-pw")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "REAPER_DATABASE_URL" in str(caught.value) and "s3cret-pw" not in str(caught.value)


def test_the_safe_url_masks_the_password() -> None:
    settings = Settings(database_url="mysql+pymysql://app:s3cret-pw@db.internal/tasks")
    assert "s3cret-pw" not in settings.safe_database_url and settings.secrets == ("s3cret-pw",)


def test_dotenv_lines_of_the_application_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    Path(".env").write_text("DATABASE_URL=postgresql://app@db/app\nSECRET_KEY=xyz\nREAPER_BATCH_SIZE=50\n")
    assert load_settings().batch_size == 50


def test_an_unknown_reaper_line_in_dotenv_is_an_error_naming_the_file() -> None:
    Path(".env").write_text("REAPER_BATCH_SIZ=50\n")
    with pytest.raises(ConfigError, match="unknown setting REAPER_BATCH_SIZ in .env"):
        load_settings()


def test_task_types_come_from_toml_tables_and_fall_back_to_the_global_values(tmp_path: Path) -> None:
    config = write_toml(
        tmp_path / "r.toml",
        'running_timeout_hours = 20\n[task_types.video_slice]\nrunning_timeout_hours = 36\n'
        '[task_types.download]\nrunning_timeout_action = "requeue"\nmax_attempts = 5\n',
    )
    settings = load_settings({"pending_timeout_hours": 3}, config)
    video, download = settings.for_task_type("video_slice"), settings.for_task_type("download")
    assert (video.running_timeout_hours, video.pending_timeout_hours, video.running_timeout_action) == (36, 3, "fail")
    assert (
        download.running_timeout_hours,
        download.running_timeout_action,
        download.max_attempts,
    ) == (20, "requeue", 5)
    assert settings.for_task_type("render").running_timeout_hours == 20 and settings.rescues()


def test_an_unknown_key_in_a_task_type_table_is_an_error_naming_it(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "r.toml", "[task_types.video_slice]\nrunning_timeout = 36\n")
    with pytest.raises(ConfigError, match=r"unknown setting task_types\.video_slice\.running_timeout in config file"):
        load_settings(config_file=config)


@pytest.mark.parametrize(
    "line", ["running_timeout_hours = -1", 'running_timeout_action = "delete"', "max_attempts = 0"]
)
def test_an_invalid_task_type_value_is_an_error_naming_the_key(tmp_path: Path, line: str) -> None:
    config = write_toml(tmp_path / "r.toml", f"[task_types.download]\n{line}\n")
    key = line.split(" ")[0]
    with pytest.raises(ConfigError, match=rf"invalid setting task_types\.download\.{key} in config file"):
        load_settings(config_file=config)


def test_task_types_can_be_given_as_json_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REAPER_TASK_TYPES", '{"Video_Slice": {"running_timeout_hours": 36}}')
    assert load_settings().for_task_type("Video_Slice").running_timeout_hours == 36  # the case is kept


def test_a_task_type_variable_is_refused_because_names_lose_their_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REAPER_TASK_TYPES__VIDEO_SLICE__RUNNING_TIMEOUT_HOURS", "36")
    with pytest.raises(ConfigError, match="set task types in the TOML config file"):
        load_settings()


def test_heartbeat_attempts_and_actions_have_safe_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert (settings.columns.heartbeat_at, settings.columns.attempts) == (None, None)
    assert (settings.running_timeout_action, settings.pending_timeout_action) == ("fail", "fail")
    assert (settings.heartbeat_timeout_minutes, settings.max_attempts, settings.rescues()) == (10, 3, False)
    monkeypatch.setenv("REAPER_COLUMNS__HEARTBEAT_AT", "last_beat")
    monkeypatch.setenv("REAPER_HEARTBEAT_TIMEOUT_MINUTES", "5")
    monkeypatch.setenv("REAPER_PENDING_TIMEOUT_ACTION", "requeue")
    settings = load_settings()
    assert (
        settings.columns.heartbeat_at,
        settings.heartbeat_timeout_minutes,
        settings.rescues(),
    ) == ("last_beat", 5, True)


@pytest.mark.parametrize(
    "tables, message",
    [
        ("[task_types.video]\nmax_attempts = 2\n[task_types.Video]\nmax_attempts = 3\n", "differ only in case"),
        ('[task_types."*"]\nmax_attempts = 2\n', "reserved for reports"),
        ('[task_types." video"]\nmax_attempts = 2\n', "start or end with a space"),
        ("[task_types.video]\nmax_attempts = true\n", "task_types.video.max_attempts"),
    ],
)
def test_task_type_names_and_values_that_could_mislead_are_refused(tmp_path: Path, tables: str, message: str) -> None:
    config = write_toml(tmp_path / "r.toml", tables)
    with pytest.raises(ConfigError, match=message):
        load_settings(config_file=config)


def test_a_task_type_action_sets_both_actions_unless_one_is_set_on_its_own(tmp_path: Path) -> None:
    config = write_toml(
        tmp_path / "r.toml", '[task_types.download]\naction = "requeue"\npending_timeout_action = "fail"\n'
    )
    download = load_settings(config_file=config).for_task_type("download")
    assert (download.running_timeout_action, download.pending_timeout_action) == ("requeue", "fail")


def test_a_bad_task_type_in_the_environment_is_blamed_on_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_toml(tmp_path / "r.toml", "running_timeout_hours = 3\n")
    monkeypatch.setenv("REAPER_TASK_TYPES", '{"video": {"bogus": 1}}')
    with pytest.raises(ConfigError, match=r"task_types\.video\.bogus in REAPER_TASK_TYPES \("):
        load_settings(config_file=config)
    monkeypatch.setenv("REAPER_TASK_TYPES", '{"video": ')
    with pytest.raises(ConfigError, match="from the environment"):
        load_settings(config_file=config)


INTEGER_SETTINGS = [
    "batch_size", "max_attempts", "max_retries", "confirm_above", "metrics_port", "metrics_max_task_types",
]
NUMBER_SETTINGS = [
    "running_timeout_hours", "pending_timeout_hours", "failure_retention_days", "success_retention_days",
    "heartbeat_timeout_minutes", "batch_time_seconds", "sleep_seconds", "max_runtime_seconds",
    "lock_timeout_seconds", "statement_timeout_seconds", "reload_interval_minutes", "stats_interval_seconds",
    "totals_interval_seconds",
]


@pytest.mark.parametrize("name", INTEGER_SETTINGS + NUMBER_SETTINGS)
def test_a_toml_boolean_is_not_taken_for_a_number(tmp_path: Path, name: str) -> None:
    config = write_toml(tmp_path / "r.toml", f"{name} = true\n")
    with pytest.raises(ConfigError, match=f"invalid setting REAPER_{name.upper()}"):
        load_settings(config_file=config)


@pytest.mark.parametrize("value", ["2.0", "2.5", '"2"'])
@pytest.mark.parametrize("name", INTEGER_SETTINGS)
def test_a_toml_float_or_string_is_not_taken_for_a_whole_number(tmp_path: Path, name: str, value: str) -> None:
    config = write_toml(tmp_path / "r.toml", f"{name} = {value}\n")
    with pytest.raises(ConfigError, match=f"invalid setting REAPER_{name.upper()}"):
        load_settings(config_file=config)


@pytest.mark.parametrize("value", ["true", "2.0", "2.5", "two", ""])
@pytest.mark.parametrize("name", INTEGER_SETTINGS)
def test_an_environment_value_that_is_not_a_whole_number_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"REAPER_{name.upper()}", value)
    with pytest.raises(ConfigError, match=f"invalid setting REAPER_{name.upper()}"):
        load_settings()


@pytest.mark.parametrize("value", ["true", "yes", ""])
def test_an_environment_boolean_is_not_taken_for_a_threshold(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("REAPER_SUCCESS_RETENTION_DAYS", value)
    with pytest.raises(ConfigError, match="invalid setting REAPER_SUCCESS_RETENTION_DAYS"):
        load_settings()


def test_a_number_given_as_text_in_the_environment_or_dotenv_is_read_as_a_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    Path(".env").write_text("REAPER_MAX_RETRIES=5\nREAPER_SLEEP_SECONDS=0.5\n")
    monkeypatch.setenv("REAPER_BATCH_SIZE", " 250 ")
    monkeypatch.setenv("REAPER_SUCCESS_RETENTION_DAYS", "14")
    settings = load_settings()
    assert (settings.batch_size, settings.max_retries, settings.sleep_seconds) == (250, 5, 0.5)
    assert settings.success_retention_days == 14


def test_a_whole_number_is_a_valid_threshold_in_toml(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "r.toml", "success_retention_days = 14\nbatch_size = 250\n")
    settings = load_settings(config_file=config)
    assert (settings.success_retention_days, settings.batch_size) == (14, 250)


@pytest.mark.parametrize(
    "line", ["running_timeout_hours = true", "heartbeat_timeout_minutes = false", 'pending_timeout_hours = "2"']
)
def test_a_task_type_threshold_that_is_not_a_number_is_refused(tmp_path: Path, line: str) -> None:
    config = write_toml(tmp_path / "r.toml", f"[task_types.download]\n{line}\n")
    key = line.split(" ")[0]
    with pytest.raises(ConfigError, match=rf"invalid setting task_types\.download\.{key}"):
        load_settings(config_file=config)


def test_a_task_type_threshold_given_as_a_json_boolean_in_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REAPER_TASK_TYPES", '{"download": {"running_timeout_hours": true}}')
    with pytest.raises(ConfigError, match=r"task_types\.download\.running_timeout_hours in REAPER_TASK_TYPES"):
        load_settings()
