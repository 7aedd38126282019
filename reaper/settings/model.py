"""Settings: flags, ``REAPER_*`` environment, ``.env`` and an optional TOML file, validated once.

Precedence, highest first: command-line flags, the process environment, ``.env`` in the working
directory, the TOML file named by ``--config`` or ``REAPER_CONFIG_FILE``, the defaults below.
An unknown ``REAPER_*`` variable or TOML key is an error rather than a silent no-op, because a
misspelt threshold would otherwise leave the default (and its deletions) in force.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from reaper.database.connection import backend_of, safe_url, url_secrets
from reaper.engine.sizing import MAX_BATCH_SIZE, MAX_ID_LIST
from reaper.engine.throttle import DEFAULT_MAX_PAUSE_SECONDS, ThrottleSettings, check_names, parse_spec
from reaper.errors import ConfigError
from reaper.settings.presets import PRESETS, preset_named, with_preset_defaults

ENV_PREFIX = "REAPER_"
DOTENV_FILE = ".env"
# "REAP" on a telephone keypad; outside 9100-9999, the range Prometheus's list of default exporter
# ports is allocated from, so it collides with no listed exporter.
DEFAULT_METRICS_PORT = 7327
# No threshold beyond a century: now minus it must stay a valid date.
MAX_DAYS = 36500
DEFAULT_DATABASE_URL = "sqlite:///reaper.database.connection"
MIN_RESCUE_INTERVAL_SECONDS = 10
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
# Settings whose value may hold a password: an error about them never shows the value.
SECRET_SETTINGS = ("database_url", "replica_urls")
WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")
# pydantic's words for a strict number setting given something else (a boolean, a fraction, text)
NUMBER_ERRORS = {"int_type": "expected a whole number", "float_type": "expected a number"}


class Columns(BaseModel):
    """Column names of the task table, by role; ``None`` (an empty value) means the table has none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = "id"
    status: str = "status"
    task_type: str | None = "task_type"
    created_at: str = "created_at"
    started_at: str | None = "started_at"
    finished_at: str | None = "completed_at"
    updated_at: str | None = "updated_at"
    error: str | None = "error_message"
    heartbeat_at: str | None = None
    attempts: str | None = None
    result: str | None = None  # a failure writes a Celery exception there (see celery_results)

    @field_validator(
        "task_type", "started_at", "finished_at", "updated_at", "error", "heartbeat_at", "attempts", "result",
        mode="before",
    )
    @classmethod
    def _empty_means_absent(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("id", "status", "created_at", mode="before")
    @classmethod
    def _required(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError("this column is required and cannot be empty")
        return value.strip() if isinstance(value, str) else value

    def present(self) -> dict[str, str]:
        """Return role -> column name for the columns the table has."""
        return {role: name for role, name in self.model_dump().items() if name}


class Statuses(BaseModel):
    """The status vocabulary, by role. Matching against stored values ignores case."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pending: str = "pending"
    running: str = "running"
    success: str = "success"
    failure: str = "failure"
    retry: str = "retry"
    revoked: str = "revoked"

    @field_validator("*", mode="after")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("a status value cannot be empty")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> Statuses:
        seen: dict[str, str] = {}
        for role, value in self.model_dump().items():
            other = seen.setdefault(value.lower(), role)
            if other != role:
                raise ValueError(f"statuses {other} and {role} share the value {value!r}")
        return self


RescueAction = Literal["fail", "requeue"]
MAX_HOURS = MAX_DAYS * 24


class TaskTypeSettings(BaseModel):
    """The thresholds and actions of one task type (``[task_types.NAME]``); unset keys fall back to the global ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    running_timeout_hours: float | None = Field(None, gt=0, le=MAX_HOURS, allow_inf_nan=False, strict=True)
    pending_timeout_hours: float | None = Field(None, gt=0, le=MAX_HOURS, allow_inf_nan=False, strict=True)
    failure_retention_days: float | None = Field(None, gt=0, le=MAX_DAYS, allow_inf_nan=False, strict=True)
    success_retention_days: float | None = Field(None, gt=0, le=MAX_DAYS, allow_inf_nan=False, strict=True)
    heartbeat_timeout_minutes: float | None = Field(None, gt=0, le=MAX_HOURS * 60, allow_inf_nan=False, strict=True)
    running_timeout_action: RescueAction | None = None
    pending_timeout_action: RescueAction | None = None
    action: RescueAction | None = None  # both of the above, where they are not set
    max_attempts: int | None = Field(None, ge=1, le=1000, strict=True)


# A task type name is matched against stored values (case-insensitively on many MySQL collations),
# and "*" names the default rule in reports: names that could collide are refused.
RESERVED_TYPE_NAMES = ("*",)


class Settings(BaseSettings):
    """Everything reaper can be told; immutable once loaded."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    # The REAPER_* lines of .env, read by load_settings (a class variable, not a setting).
    dotenv_values: ClassVar[Mapping[str, str]] = {}
    # Whether a source (flag, environment, .env, file) gave batch_size: see batch_ceiling.
    _batch_size_given: bool | None = PrivateAttr(default=None)

    config_file: Path | None = None
    preset: str | None = None  # see presets.py: defaults for a known job table
    celery_result_serializer: Literal["json", "pickle"] = "json"
    database_url: str = DEFAULT_DATABASE_URL
    database_timezone: str = "UTC"
    table: str = "processing_tasks"
    table_schema: str | None = None  # the table's schema (PostgreSQL) or database (MySQL); None: the default
    columns: Columns = Columns()
    statuses: Statuses = Statuses()
    running_timeout_hours: float = Field(24.0, gt=0, le=MAX_HOURS, allow_inf_nan=False, strict=True)
    pending_timeout_hours: float = Field(2.0, gt=0, le=MAX_HOURS, allow_inf_nan=False, strict=True)
    failure_retention_days: float = Field(7.0, gt=0, le=MAX_DAYS, allow_inf_nan=False, strict=True)
    success_retention_days: float = Field(30.0, gt=0, le=MAX_DAYS, allow_inf_nan=False, strict=True)
    heartbeat_timeout_minutes: float = Field(10.0, gt=0, le=MAX_HOURS * 60, allow_inf_nan=False, strict=True)
    running_timeout_action: RescueAction = "fail"
    pending_timeout_action: RescueAction = "fail"
    max_attempts: int = Field(3, ge=1, le=1000, strict=True)
    task_types: dict[str, TaskTypeSettings] = Field(default_factory=dict)
    batch_size: int = Field(1000, ge=1, le=MAX_ID_LIST, strict=True)  # the first batch's; set, the most (sizing)
    batch_time_seconds: float = Field(0.25, ge=0, le=60, allow_inf_nan=False, strict=True)  # 0: fixed batches
    sleep_seconds: float = Field(0.0, ge=0, le=3600, allow_inf_nan=False, strict=True)
    max_runtime_seconds: float | None = Field(None, gt=0, allow_inf_nan=False, strict=True)
    lock_timeout_seconds: float = Field(5.0, gt=0, le=3600, allow_inf_nan=False, strict=True)
    statement_timeout_seconds: float = Field(60.0, gt=0, le=86400, allow_inf_nan=False, strict=True)
    max_retries: int = Field(3, ge=0, le=20, strict=True)
    max_load: str | None = None  # NAME=VALUE[,NAME=VALUE...]: pause while any is above (see throttle)
    critical_load: str | None = None  # the same form: stop the run above it
    max_replica_lag_seconds: float | None = Field(None, gt=0, le=86400, allow_inf_nan=False, strict=True)
    # A list (TOML, JSON) or URLs separated by commas (environment)
    replica_urls: tuple[str, ...] | str = ()
    max_pause_seconds: float = Field(DEFAULT_MAX_PAUSE_SECONDS, gt=0, le=86400, allow_inf_nan=False, strict=True)
    archive: Literal["none", "jsonl", "table"] = "none"
    archive_dir: Path = Path("reaper-archive")
    archive_table: str | None = None
    audit_log: Path | None = Path("reaper-audit.jsonl")
    confirm_above: int = Field(10000, ge=0, strict=True)
    dry_run_at: str = "01:00"
    cleanup_at: str = "02:00"
    timezone: str = "UTC"
    # 0: rescues only with the nightly cleanup
    rescue_interval_seconds: float = Field(300.0, ge=0, le=86400, allow_inf_nan=False, strict=True)
    # 0: a failed cleanup waits a day
    cleanup_retry_hours: float = Field(6.0, ge=0, le=24, allow_inf_nan=False, strict=True)
    reload_interval_minutes: float = Field(60.0, gt=0, allow_inf_nan=False, strict=True)
    stats_interval_seconds: float = Field(30.0, ge=1, allow_inf_nan=False, strict=True)
    totals_interval_seconds: float = Field(600.0, gt=0, allow_inf_nan=False, strict=True)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(DEFAULT_METRICS_PORT, ge=0, le=65535, strict=True)
    metrics_certfile: Path | None = None
    metrics_keyfile: Path | None = None
    metrics_client_cafile: Path | None = None
    metrics_max_task_types: int = Field(50, ge=1, le=1000, strict=True)
    log_level: str = "INFO"
    log_file: Path | None = None
    log_json: bool = False

    @model_validator(mode="before")
    @classmethod
    def _preset_defaults(cls, data: Any) -> Any:
        # Before validation, so that only what no source gave is filled in; an unknown name is left
        # to _known_preset to report.
        if not isinstance(data, dict) or not isinstance(data.get("preset"), str):
            return data
        preset = PRESETS.get(_preset_key(data["preset"]))
        return data if preset is None else with_preset_defaults(data, preset)

    @field_validator("preset", mode="before")
    @classmethod
    def _known_preset(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return None
        if _preset_key(value) not in PRESETS:
            raise ValueError(f"unknown preset (choose from {', '.join(PRESETS)})")
        return _preset_key(value)

    @model_validator(mode="after")
    def _requeue_offered(self) -> Settings:
        preset = preset_named(self.preset)
        if preset is not None and preset.requeue_refusal and self.rescues():
            raise ValueError(
                f"the {preset.name} preset does not requeue: {preset.requeue_refusal}; "
                "set the running and pending timeout actions to fail"
            )
        return self

    @field_validator("database_url", mode="after")
    @classmethod
    def _parsable_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except (ArgumentError, ValueError):
            raise ValueError("not a database URL (expected dialect+driver://user:password@host/db)") from None
        if url.host and "@" in url.host:  # the password's own "@" ends it early: its tail would show as the host
            raise ValueError("the URL has more than one '@': write an '@' in the password or user name as %40")
        return value

    @field_validator("database_timezone", mode="after")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("audit_log", "archive_table", "table_schema", mode="before")
    @classmethod
    def _empty_means_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

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
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("replica_urls", mode="after")
    @classmethod
    def _parsable_urls(cls, value: tuple[str, ...] | str) -> tuple[str, ...]:
        urls = cls._url_list(value)
        for url in urls:
            cls._parsable_url(url)
        return tuple(urls)

    @model_validator(mode="after")
    def _throttle_fits_the_database(self) -> Settings:
        backend = backend_of(self.url)
        for flag, setting, spec in (("--max-load", "REAPER_MAX_LOAD", self.max_load),
                                    ("--critical-load", "REAPER_CRITICAL_LOAD", self.critical_load)):
            if spec:
                try:
                    check_names(parse_spec(spec), backend)
                except ValueError as exc:
                    raise ValueError(f"{flag} ({setting}) {spec!r}: {exc}") from None
        lag = "--max-replica-lag (REAPER_MAX_REPLICA_LAG_SECONDS)"
        if self.replicas and self.max_replica_lag_seconds is None:
            raise ValueError(f"--replica (REAPER_REPLICA_URLS) needs {lag}")
        if self.max_replica_lag_seconds is None:
            return self
        if backend not in ("mysql", "postgresql"):
            raise ValueError(f"{lag}: replicas are watched on MySQL, MariaDB and PostgreSQL, not {backend}")
        if backend == "mysql" and not self.replicas:
            raise ValueError(f"{lag} needs at least one --replica URL (REAPER_REPLICA_URLS) on MySQL and "
                             "MariaDB: a primary does not know its replicas' lag")
        for url in self.replicas:
            if backend_of(make_url(url)) != backend:
                safe = make_url(url).render_as_string(hide_password=True)
                raise ValueError(f"--replica {safe}: not a replica of a {backend} database")
        return self

    @field_validator("dry_run_at", "cleanup_at", mode="after")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        hours, _, minutes = value.strip().partition(":")
        if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2 and int(hours) < 24 and int(minutes) < 60):
            raise ValueError("expected a time of day HH:MM")
        return f"{int(hours):02d}:{minutes}"

    @field_validator("timezone", mode="after")
    @classmethod
    def _schedule_zone(cls, value: str) -> str:
        return cls._known_zone(value)

    @field_validator("rescue_interval_seconds", mode="after")
    @classmethod
    def _rescue_interval(cls, value: float) -> float:
        # Each rescue takes the run lock and reads two index ranges: more often than this only loads the server.
        if 0 < value < MIN_RESCUE_INTERVAL_SECONDS:
            least = MIN_RESCUE_INTERVAL_SECONDS
            raise ValueError(f"must be 0 (rescues only with the nightly cleanup) or at least {least}")
        return value

    @model_validator(mode="after")
    def _certificate_pair(self) -> Settings:
        if (self.metrics_certfile is None) != (self.metrics_keyfile is None):
            raise ValueError("REAPER_METRICS_CERTFILE and REAPER_METRICS_KEYFILE go together")
        return self

    @field_validator("task_types", mode="after")
    @classmethod
    def _named_task_types(cls, value: dict[str, TaskTypeSettings]) -> dict[str, TaskTypeSettings]:
        seen: dict[str, str] = {}
        for name in value:
            if not name.strip() or name != name.strip():
                raise ValueError(f"task type {name!r}: a name cannot be empty or start or end with a space")
            if name in RESERVED_TYPE_NAMES or "," in name:
                raise ValueError(f"task type {name!r}: '*' and ',' are reserved for reports")
            other = seen.setdefault(name.casefold(), name)
            if other != name:  # a case-insensitive collation would match one row by both rules
                raise ValueError(f"task types {other!r} and {name!r} differ only in case")
        return value

    def for_task_type(self, name: str | None) -> TaskTypeSettings:
        """Return the thresholds and actions in force for task type ``name`` (``None``: the global ones)."""
        own = self.task_types.get(name) if name is not None else None
        merged = {key: getattr(self, key) for key in TaskTypeSettings.model_fields if key != "action"}
        if own is not None:
            merged.update(own.model_dump(exclude_none=True, exclude={"action"}))
            for key in ("running_timeout_action", "pending_timeout_action"):
                if own.action is not None and getattr(own, key) is None:
                    merged[key] = own.action
        return TaskTypeSettings(**merged)

    @property
    def batch_ceiling(self) -> int:
        """How far batches may grow: ``batch_size`` when the user set it, else ``MAX_BATCH_SIZE``."""
        given = self._batch_size_given
        if given is None:  # built directly, not by load_settings: what was set is still known
            given = "batch_size" in self.model_fields_set
        return self.batch_size if given else MAX_BATCH_SIZE

    def rescues(self) -> bool:
        """Whether any policy, for any task type, requeues instead of failing."""
        every_type = [self.for_task_type(None), *(self.for_task_type(name) for name in self.task_types)]
        return any("requeue" in (own.running_timeout_action, own.pending_timeout_action) for own in every_type)

    @field_validator("table", mode="after")
    @classmethod
    def _table_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the table name cannot be empty")
        return value.strip()

    @field_validator("log_level", mode="after")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value.upper()

    @property
    def replicas(self) -> tuple[str, ...]:
        """The replica URLs (``replica_urls``, always a tuple once validated)."""
        return self.replica_urls if isinstance(self.replica_urls, tuple) else (self.replica_urls,)

    @property
    def throttle(self) -> ThrottleSettings:
        """What the throttle watches: load limits, replica lag and the longest pause, parsed."""
        return ThrottleSettings(
            max_load=parse_spec(self.max_load) if self.max_load else (),
            critical_load=parse_spec(self.critical_load) if self.critical_load else (),
            max_replica_lag_seconds=self.max_replica_lag_seconds,
            replica_urls=self.replicas,
            max_pause_seconds=self.max_pause_seconds,
        )

    @property
    def safe_replica_urls(self) -> list[str]:
        """The replica URLs with their passwords masked, for output."""
        return [safe_url(url) for url in self.replicas]

    @property
    def url(self) -> URL:
        """The database URL, parsed."""
        return make_url(self.database_url)

    @property
    def safe_database_url(self) -> str:
        """The database URL with its passwords masked (in the user part or the query), for output."""
        return safe_url(self.database_url)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings that must never appear in any output: the passwords of the database and the replicas."""
        secrets: list[str] = []
        for url in (self.url, *(make_url(replica) for replica in self.replicas)):
            secrets += url_secrets(url)
        return tuple(secret for secret in secrets if secret)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags, then environment, then ``.env``, then the TOML file (when one is named)."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, _EnvSource(settings_cls)]
        sources.append(_DotEnvSource(settings_cls, cls.dotenv_values))
        toml_file = cls.model_config.get("toml_file")
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


def _number_from_text(field: FieldInfo, value: Any) -> Any:
    """The text of a number setting (an environment variable) as the number it spells.

    Number settings are strict, so that TOML's ``true`` is not taken for 1 nor ``2.5`` for 2; a
    variable is always text, so its digits are read here: an integer setting takes only a whole
    number. Other text is left as it is, for the validator to refuse with the setting's name.
    """
    kinds = {field.annotation, *get_args(field.annotation)}
    if not isinstance(value, str) or not kinds & {int, float}:
        return value
    text = value.strip()
    if int in kinds:
        return int(text) if WHOLE_NUMBER.fullmatch(text) else value
    try:
        return float(text)  # nan and inf too: the fields refuse them by name
    except ValueError:
        return value


class _EnvSource(EnvSettingsSource):
    """The ``REAPER_*`` environment variables, numbers read from their text."""

    def prepare_field_value(self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool) -> Any:
        """Decode the variable as pydantic-settings does, then read a number setting's text."""
        return _number_from_text(field, super().prepare_field_value(field_name, field, value, value_is_complex))


def _preset_key(name: str) -> str:
    return name.strip().lower()


class _DotEnvSource(_EnvSource):
    """The ``REAPER_*`` lines of ``.env``; its other lines belong to the application and are ignored."""

    def __init__(self, settings_cls: type[BaseSettings], values: Mapping[str, str]) -> None:
        self._values = {key.lower(): value for key, value in values.items()}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._values


def env_name(location: tuple[int | str, ...]) -> str:
    """Return the environment variable that sets the setting at ``location``."""
    return ENV_PREFIX + "__".join(str(part).upper() for part in location)


def _check_toml(path: Path) -> None:
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    try:
        with path.open("rb") as handle:
            tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8 text
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (line {line}: {exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror}") from None


def _named_config_file(values: Mapping[str, str]) -> str | None:
    for key, value in values.items():
        if key.upper() == ENV_PREFIX + "CONFIG_FILE" and value:
            return value
    return None


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    values = dotenv_values(path)
    return {key: value for key, value in values.items() if key.upper().startswith(ENV_PREFIX) and value is not None}


def _check_environment(environ: Mapping[str, str], where: str = "the environment") -> None:
    known = {env_name((name,)) for name in Settings.model_fields}
    nested = {env_name((name,)) for name in ("columns", "statuses")}
    for key in sorted(name.upper() for name in environ):  # names are matched ignoring case
        if not key.startswith(ENV_PREFIX) or key in known:
            continue
        if any(key.startswith(prefix + "__") for prefix in nested):
            continue
        if key.startswith(ENV_PREFIX + "TASK_TYPES__"):  # variable names lose the case of a task type
            raise ConfigError(
                f"{key} in {where}: set task types in the TOML config file ([task_types.NAME]) "
                "or as JSON in REAPER_TASK_TYPES"
            )
        raise ConfigError(f"unknown setting {key} in {where}")


def _task_types_source(dotenv: Mapping[str, str], config_file: Path | None) -> str:
    """Where the task types in force come from: the first source, by precedence, that sets them."""
    name = ENV_PREFIX + "TASK_TYPES"
    if any(key.upper() == name for key in os.environ):
        return f" in {name}"
    if any(key.upper() == name for key in dotenv):
        return f" in {name} of {DOTENV_FILE}"
    return f" in config file {str(config_file)!r}" if config_file else ""


def _describe(error: ValidationError, config_file: Path | None, dotenv: Mapping[str, str]) -> str:
    first = error.errors()[0]
    location = tuple(first["loc"])
    message = NUMBER_ERRORS.get(first["type"], first["msg"].removeprefix("Value error, "))
    where = f" in config file {str(config_file)!r}" if config_file else ""
    if location[:1] == ("task_types",):  # usually a TOML table of its own, not a variable
        where = _task_types_source(dotenv, config_file)
        dotted = ".".join(map(str, location))
        if first["type"] == "extra_forbidden":
            known = ", ".join(TaskTypeSettings.model_fields)
            return f"unknown setting {dotted}{where} (a task type takes: {known})"
        return f"invalid setting {dotted}{where}: {message} (got {first.get('input')!r})"
    if first["type"] == "extra_forbidden":
        return f"unknown setting {'.'.join(map(str, location))} ({env_name(location)}){where}"
    if not location:  # a rule across several settings names them in its message
        return f"invalid settings: {message}"
    shown = "" if location[:1] and location[0] in SECRET_SETTINGS else f" (got {first.get('input')!r})"
    return f"invalid setting {env_name(location)}: {message}{shown}"


def load_settings(overrides: Mapping[str, Any] | None = None, config_file: Path | None = None) -> Settings:
    """Build the settings from flags (``overrides``), environment, ``.env`` and the TOML file."""
    values = {key: value for key, value in (overrides or {}).items() if value is not None}
    _check_environment(os.environ)
    try:
        dotenv = _read_dotenv(Path(DOTENV_FILE))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {DOTENV_FILE}: {exc}") from None
    _check_environment({key.upper(): value for key, value in dotenv.items()}, DOTENV_FILE)
    if config_file is None:
        named = _named_config_file(os.environ) or _named_config_file(dotenv)
        config_file = Path(named) if named else None
    if config_file is not None:
        _check_toml(config_file)
    # A subclass carries the TOML path so that the shared class is never mutated.
    loader = type(
        "Settings",
        (Settings,),
        {"model_config": {**Settings.model_config, "toml_file": config_file}, "dotenv_values": dotenv},
    )
    try:
        loaded = loader(**values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, config_file, dotenv)) from None
    except SettingsError as exc:  # a nested value (REAPER_COLUMNS=...) that is not JSON, for one
        first_line = str(exc).splitlines()[0]
        for source, said in (("_DotEnvSource", DOTENV_FILE), ("_EnvSource", "the environment")):
            first_line = first_line.replace(f'source "{source}"', said)
        raise ConfigError(f"invalid settings: {first_line} (not valid JSON?)") from None
    settings = Settings.model_validate(loaded.model_dump())
    settings._batch_size_given = "batch_size" in loaded.model_fields_set
    return settings
