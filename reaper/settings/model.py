"""Settings: flags, ``REAPER_*`` environment, ``.env`` and an optional TOML file, validated once.

Precedence, highest first: command-line flags, the process environment, ``.env`` in the working
directory, the TOML file named by ``--config`` or ``REAPER_CONFIG_FILE``, the defaults.
An unknown ``REAPER_*`` variable or TOML key is an error rather than a silent no-op, because a
misspelt threshold would otherwise leave the default (and its deletions) in force.

Every source speaks flat names (``batch_size``, ``REAPER_BATCH_SIZE``): they are the product's
contract. ``Settings`` groups them by what they shape (``settings.batching.batch_size``); a
setting keeps its name inside its group, so the flat name of ``settings.<group>.<name>`` is
``<name>``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import SettingsError
from sqlalchemy.engine import URL, make_url

from reaper.database.connection import url_secrets
from reaper.database.dialects import dialect_of
from reaper.errors import ConfigError
from reaper.settings.batching import BatchSettings
from reaper.settings.daemon import DaemonSettings, LogSettings, MetricsSettings
from reaper.settings.database import DatabaseSettings
from reaper.settings.policies import MAX_DAYS, PolicySettings, TaskTypeSettings
from reaper.settings.presets import preset_named
from reaper.settings.safety import SafetySettings
from reaper.settings.sources import (
    DOTENV_FILE,
    ENV_PREFIX,
    DotEnvSource,
    EnvSource,
    check_environment,
    describe,
    env_name,
    merged,
    named_config_file,
    read_dotenv,
    read_toml,
    source_shape,
)
from reaper.settings.suggest import suggestion
from reaper.settings.table import Columns, Statuses, TableSettings
from reaper.settings.throttling import ThrottleSettings, ThrottlingSettings, check_names, parse_spec

# What callers import from here, wherever it is defined.
__all__ = [
    "ENV_PREFIX", "MAX_DAYS", "Columns", "Settings", "Statuses", "TaskTypeSettings", "env_name", "load_settings",
    "setting_fields",
]


class Settings(BaseModel):
    """Everything reaper can be told, grouped by what it shapes; immutable once loaded.

    Built from flat names, as every source gives them (``Settings(batch_size=500)``), or from
    whole groups.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    config_file: Path | None = None
    # Each group defaults to its settings' defaults, validated from nothing: none counts as given.
    database: DatabaseSettings = DatabaseSettings.model_validate({})
    task_table: TableSettings = TableSettings.model_validate({})
    policies: PolicySettings = PolicySettings.model_validate({})
    batching: BatchSettings = BatchSettings.model_validate({})
    throttling: ThrottlingSettings = ThrottlingSettings.model_validate({})
    safety: SafetySettings = SafetySettings.model_validate({})
    daemon: DaemonSettings = DaemonSettings.model_validate({})
    metrics: MetricsSettings = MetricsSettings.model_validate({})
    logs: LogSettings = LogSettings.model_validate({})

    @model_validator(mode="before")
    @classmethod
    def _grouped(cls, data: Any) -> Any:
        # Each flat name goes into its group, with only the keys a source gave: the groups' own
        # model_fields_set then says what was given (BatchSettings.ceiling reads it).
        if not isinstance(data, dict):
            return data
        grouped = {key: value for key, value in data.items() if key not in GROUP_OF}
        for key, value in data.items():
            if key in GROUP_OF:
                given = grouped.get(GROUP_OF[key], {})  # a whole group given too: the flat name wins in it
                given = given.model_dump(exclude_unset=True) if isinstance(given, BaseModel) else given
                grouped[GROUP_OF[key]] = {**given, key: value}
        return grouped

    @model_validator(mode="after")
    def _requeue_offered(self) -> Settings:
        preset = preset_named(self.task_table.preset)
        if preset is not None and preset.requeue_refusal and self.policies.rescues():
            raise ValueError(
                f"the {preset.name} preset does not requeue: {preset.requeue_refusal}; "
                "set the running and pending timeout actions to fail"
            )
        return self

    @model_validator(mode="after")
    def _throttle_fits_the_database(self) -> Settings:
        backend, throttling = dialect_of(self.url).name, self.throttling
        for flag, setting, spec in (("--max-load", "REAPER_MAX_LOAD", throttling.max_load),
                                    ("--critical-load", "REAPER_CRITICAL_LOAD", throttling.critical_load)):
            if spec:
                try:
                    check_names(parse_spec(spec), backend)
                except ValueError as exc:
                    raise ValueError(f"{flag} ({setting}) {spec!r}: {exc}") from None
        lag = "--max-replica-lag (REAPER_MAX_REPLICA_LAG_SECONDS)"
        if throttling.replicas and throttling.max_replica_lag_seconds is None:
            raise ValueError(f"--replica (REAPER_REPLICA_URLS) needs {lag}")
        if throttling.max_replica_lag_seconds is None:
            return self
        if backend not in ("mysql", "postgresql"):
            raise ValueError(f"{lag}: replicas are watched on MySQL, MariaDB and PostgreSQL, not {backend}")
        if backend == "mysql" and not throttling.replicas:
            raise ValueError(f"{lag} needs at least one --replica URL (REAPER_REPLICA_URLS) on MySQL and "
                             "MariaDB: a primary does not know its replicas' lag")
        for url in throttling.replicas:
            if dialect_of(make_url(url)).name != backend:
                safe = make_url(url).render_as_string(hide_password=True)
                raise ValueError(f"--replica {safe}: not a replica of a {backend} database")
        return self

    def value_of(self, name: str) -> Any:
        """The value of the setting called ``name`` (its flat name: ``REAPER_<NAME>``, its TOML key)."""
        if name in GROUP_OF:
            return getattr(getattr(self, GROUP_OF[name]), name)
        if name in GROUPS or name not in type(self).model_fields:
            raise KeyError(f"no setting called {name!r}")
        return getattr(self, name)

    def differences(self, other: Settings) -> set[str]:
        """The flat names of the settings whose values differ in ``other``."""
        return {name for name in setting_fields() if self.value_of(name) != other.value_of(name)}

    @property
    def url(self) -> URL:
        """The database URL, parsed."""
        return self.database.url

    @property
    def safe_database_url(self) -> str:
        """The database URL with its passwords masked (in the user part or the query), for output."""
        return self.database.safe_url

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings that must never appear in any output: the passwords of the database and the replicas."""
        secrets: list[str] = []
        for url in (self.url, *(make_url(replica) for replica in self.throttling.replicas)):
            secrets += url_secrets(url)
        return tuple(secret for secret in secrets if secret)

    @property
    def throttle(self) -> ThrottleSettings:
        """What the throttle watches: load limits, replica lag and the longest pause, parsed."""
        return self.throttling.parsed

    # --- flat readers of reaper/cli/ and reaper/database/, until they read the groups -----------

    @property
    def table(self) -> str:
        """``task_table.table``."""
        return self.task_table.table

    @property
    def table_schema(self) -> str | None:
        """``task_table.table_schema``."""
        return self.task_table.table_schema

    @property
    def preset(self) -> str | None:
        """``task_table.preset``."""
        return self.task_table.preset

    @property
    def celery_result_serializer(self) -> str:
        """``task_table.celery_result_serializer``."""
        return self.task_table.celery_result_serializer

    @property
    def columns(self) -> Columns:
        """``task_table.columns``."""
        return self.task_table.columns

    @property
    def statuses(self) -> Statuses:
        """``task_table.statuses``."""
        return self.task_table.statuses

    @property
    def database_timezone(self) -> str:
        """``database.database_timezone``."""
        return self.database.database_timezone

    @property
    def lock_timeout_seconds(self) -> float:
        """``database.lock_timeout_seconds``."""
        return self.database.lock_timeout_seconds

    @property
    def statement_timeout_seconds(self) -> float:
        """``database.statement_timeout_seconds``."""
        return self.database.statement_timeout_seconds

    @property
    def task_types(self) -> Mapping[str, TaskTypeSettings]:
        """``policies.task_types``."""
        return self.policies.task_types

    def rescues(self) -> bool:
        """``policies.rescues()``: whether any policy, for any task type, requeues instead of failing."""
        return self.policies.rescues()

    @property
    def batch_size(self) -> int:
        """``batching.batch_size``."""
        return self.batching.batch_size

    @property
    def confirm_above(self) -> int:
        """``safety.confirm_above``."""
        return self.safety.confirm_above

    @property
    def audit_log(self) -> Path | None:
        """``safety.audit_log``."""
        return self.safety.audit_log

    @property
    def log_level(self) -> str | None:
        """``logs.log_level``."""
        return self.logs.log_level

    @property
    def log_file(self) -> Path | None:
        """``logs.log_file``."""
        return self.logs.log_file

    @property
    def log_json(self) -> bool:
        """``logs.log_json``."""
        return self.logs.log_json


def _groups() -> dict[str, type[BaseModel]]:
    """The groups of ``Settings``: field name -> model."""
    found = {}
    for name, field in Settings.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found[name] = field.annotation
    return found


GROUPS = _groups()
# flat name -> the group it is in (settings that are in none, such as config_file, are not listed)
GROUP_OF = {name: group for group, model in GROUPS.items() for name in model.model_fields}


def setting_fields() -> dict[str, FieldInfo]:
    """Every setting by its flat name, in the groups' order: what the sources read and the reference lists."""
    fields = {name: field for name, field in Settings.model_fields.items() if name not in GROUPS}
    for model in GROUPS.values():
        fields.update(model.model_fields)
    return fields


_SOURCE_SHAPE = source_shape(setting_fields())


def _flat(error: ValidationError) -> ErrorDetails:
    """The first error of ``error``, located by flat names; a group's own rule has none, as a rule across groups."""
    first = error.errors()[0]
    location = tuple(first["loc"])
    if location[:1] and location[0] in GROUPS:
        first["loc"] = location[1:]
    return first


def _unknown_keys(values: Mapping[str, Any], config_file: Path) -> None:
    known = setting_fields()
    for key in values:
        if key not in known:
            hint = suggestion(known, (key,), ENV_PREFIX)
            raise ConfigError(f"unknown setting {key} ({env_name((key,))}) in config file {str(config_file)!r}{hint}")


def load_settings(overrides: Mapping[str, Any] | None = None, config_file: Path | None = None) -> Settings:
    """Build the settings from flags (``overrides``), environment, ``.env`` and the TOML file."""
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    fields = setting_fields()
    check_environment(os.environ, fields, "the environment")
    dotenv = read_dotenv(Path(DOTENV_FILE))
    check_environment({key.upper(): value for key, value in dotenv.items()}, fields, DOTENV_FILE)
    if config_file is None:
        named = named_config_file(os.environ) or named_config_file(dotenv)
        config_file = Path(named) if named else None
    from_file = read_toml(config_file) if config_file is not None else {}
    if config_file is not None:
        _unknown_keys(from_file, config_file)
    try:
        environment = EnvSource(_SOURCE_SHAPE)()
        from_dotenv = DotEnvSource(_SOURCE_SHAPE, dotenv)()
        return Settings.model_validate(merged(given, environment, from_dotenv, from_file))
    except ValidationError as exc:
        raise ConfigError(describe(_flat(exc), config_file, dotenv, setting_fields())) from None
    except SettingsError as exc:  # a nested value (REAPER_COLUMNS=...) that is not JSON, for one
        first_line = str(exc).splitlines()[0]
        for source, said in (("DotEnvSource", DOTENV_FILE), ("EnvSource", "the environment")):
            first_line = first_line.replace(f'source "{source}"', said)
        raise ConfigError(f"invalid settings: {first_line} (not valid JSON?)") from None
