"""Where settings come from: flags, the ``REAPER_*`` environment, ``.env`` and a TOML file.

Every source speaks the flat names of the product's contract (``REAPER_RUNNING_TIMEOUT_HOURS``,
``running_timeout_hours`` in TOML, ``REAPER_COLUMNS__ID`` and ``[columns]`` for the nested keys);
``model.Settings`` groups them. Errors are told in those names too.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

from dotenv import dotenv_values
from pydantic import BaseModel, create_model
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from reaper.errors import ConfigError
from reaper.settings.policies import TaskTypeSettings
from reaper.settings.suggest import suggestion

ENV_PREFIX = "REAPER_"
DOTENV_FILE = ".env"
# Settings whose value may hold a password: an error about them never shows the value.
SECRET_SETTINGS = ("database_url", "replica_urls")
WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")
# pydantic's words for a strict number setting given something else (a boolean, a fraction, text)
NUMBER_ERRORS = {"int_type": "expected a whole number", "float_type": "expected a number"}


def env_name(location: tuple[int | str, ...]) -> str:
    """Return the environment variable that sets the setting at ``location`` (its flat names)."""
    return ENV_PREFIX + "__".join(str(part).upper() for part in location)


class _Shape(BaseSettings):
    """The flat settings as the environment spells them; only read for its fields, never built."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")


def source_shape(fields: Mapping[str, FieldInfo]) -> type[BaseSettings]:
    """Return a settings class with ``fields`` (flat name -> field), for the environment sources to read."""
    definitions: dict[str, Any] = {name: (field.annotation, field) for name, field in fields.items()}
    return create_model("FlatSettings", __base__=_Shape, **definitions)


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


class EnvSource(EnvSettingsSource):
    """The ``REAPER_*`` environment variables, numbers read from their text."""

    def prepare_field_value(self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool) -> Any:
        """Decode the variable as pydantic-settings does, then read a number setting's text."""
        return _number_from_text(field, super().prepare_field_value(field_name, field, value, value_is_complex))


class DotEnvSource(EnvSource):
    """The ``REAPER_*`` lines of ``.env``; its other lines belong to the application and are ignored."""

    def __init__(self, settings_cls: type[BaseSettings], values: Mapping[str, str]) -> None:
        self._values = {key.lower(): value for key, value in values.items()}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._values


def read_toml(path: Path) -> dict[str, Any]:
    """Return the settings of the TOML file at ``path``; ``ConfigError`` naming it when it cannot be read."""
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8 text
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (line {line}: {exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror}") from None


def named_config_file(values: Mapping[str, str]) -> str | None:
    """The TOML file ``REAPER_CONFIG_FILE`` names in ``values`` (the environment, or ``.env``)."""
    for key, value in values.items():
        if key.upper() == ENV_PREFIX + "CONFIG_FILE" and value:
            return value
    return None


def read_dotenv(path: Path) -> dict[str, str]:
    """Return the ``REAPER_*`` lines of the ``.env`` file at ``path`` (none when there is no file)."""
    if not path.is_file():
        return {}
    try:
        values = dotenv_values(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {DOTENV_FILE}: {exc}") from None
    return {key: value for key, value in values.items() if key.upper().startswith(ENV_PREFIX) and value is not None}


def check_environment(environ: Mapping[str, str], fields: Mapping[str, FieldInfo], where: str) -> None:
    """Refuse a ``REAPER_*`` variable that is no setting: a misspelt one would leave its default in force."""
    known = {env_name((name,)) for name in fields}
    nested = {env_name((name,)) for name, field in fields.items() if _is_model(field.annotation)}
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
        location = tuple(key.removeprefix(ENV_PREFIX).lower().split("__"))
        raise ConfigError(f"unknown setting {key} in {where}{suggestion(fields, location, ENV_PREFIX, key=False)}")


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def merged(*sources: Mapping[str, Any]) -> dict[str, Any]:
    """Merge the sources' values, the first source winning; nested tables merge key by key."""
    values: dict[str, Any] = {}
    for source in reversed(sources):
        for key, value in source.items():
            below = values.get(key)
            values[key] = merged(value, below) if isinstance(value, dict) and isinstance(below, dict) else value
    return values


def _task_types_source(dotenv: Mapping[str, str], config_file: Path | None) -> str:
    """Where the task types in force come from: the first source, by precedence, that sets them."""
    name = ENV_PREFIX + "TASK_TYPES"
    if any(key.upper() == name for key in os.environ):
        return f" in {name}"
    if any(key.upper() == name for key in dotenv):
        return f" in {name} of {DOTENV_FILE}"
    return f" in config file {str(config_file)!r}" if config_file else ""


def describe(
    first: ErrorDetails, config_file: Path | None, dotenv: Mapping[str, str], fields: Mapping[str, FieldInfo]
) -> str:
    """Say what is wrong with a setting, in one line, from the first error (its location in flat names);
    ``fields``, every setting by its flat name, give an unknown one's "did you mean"."""
    location = tuple(first["loc"])
    message = NUMBER_ERRORS.get(first["type"], first["msg"].removeprefix("Value error, "))
    where = f" in config file {str(config_file)!r}" if config_file else ""
    variable = None if location[:1] == ("task_types",) else ENV_PREFIX  # task types have no variables of their own
    hint = suggestion(fields, tuple(map(str, location)), variable) if first["type"] == "extra_forbidden" else ""
    if location[:1] == ("task_types",):  # usually a TOML table of its own, not a variable
        where = _task_types_source(dotenv, config_file)
        dotted = ".".join(map(str, location))
        if first["type"] == "extra_forbidden":
            known = ", ".join(TaskTypeSettings.model_fields)
            return f"unknown setting {dotted}{where}{hint} (a task type takes: {known})"
        return f"invalid setting {dotted}{where}: {message} (got {first.get('input')!r})"
    if first["type"] == "extra_forbidden":
        return f"unknown setting {'.'.join(map(str, location))} ({env_name(location)}){where}{hint}"
    if not location:  # a rule across several settings names them in its message
        return f"invalid settings: {message}"
    shown = "" if location[:1] and location[0] in SECRET_SETTINGS else f" (got {first.get('input')!r})"
    return f"invalid setting {env_name(location)}: {message}{shown}"
