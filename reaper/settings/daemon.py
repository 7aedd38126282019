"""The daemon's settings: its schedule, its HTTP server and metrics, and the logs."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from reaper.settings.database import known_zone

# "REAP" on a telephone keypad; outside 9100-9999, the range Prometheus's list of default exporter
# ports is allocated from, so it collides with no listed exporter.
DEFAULT_METRICS_PORT = 7327
MIN_RESCUE_INTERVAL_SECONDS = 10
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")


class DaemonSettings(BaseModel):
    """When the daemon runs what: the nightly dry run and cleanup, rescues, reloads and polls."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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
        return known_zone(value)

    @field_validator("rescue_interval_seconds", mode="after")
    @classmethod
    def _rescue_interval(cls, value: float) -> float:
        # Each rescue takes the run lock and reads two index ranges: more often than this only loads the server.
        if 0 < value < MIN_RESCUE_INTERVAL_SECONDS:
            least = MIN_RESCUE_INTERVAL_SECONDS
            raise ValueError(f"must be 0 (rescues only with the nightly cleanup) or at least {least}")
        return value


class MetricsSettings(BaseModel):
    """The daemon's HTTP server (metrics, health, status page): address, TLS, and how many task types it names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(DEFAULT_METRICS_PORT, ge=0, le=65535, strict=True)
    metrics_certfile: Path | None = None
    metrics_keyfile: Path | None = None
    metrics_client_cafile: Path | None = None
    metrics_max_task_types: int = Field(50, ge=1, le=1000, strict=True)

    @model_validator(mode="after")
    def _certificate_pair(self) -> MetricsSettings:
        if (self.metrics_certfile is None) != (self.metrics_keyfile is None):
            raise ValueError("REAPER_METRICS_CERTFILE and REAPER_METRICS_KEYFILE go together")
        return self


class LogSettings(BaseModel):
    """How much is logged, and where besides stderr."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    log_level: str | None = None  # none: INFO, but WARNING on the terminal of a one-shot command
    log_file: Path | None = None
    log_json: bool = False

    @field_validator("log_level", mode="after")
    @classmethod
    def _known_level(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value.upper()
