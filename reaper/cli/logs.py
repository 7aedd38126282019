"""Log set-up: loguru to stderr (and optionally a rotated file), with secrets masked everywhere."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from loguru import logger

from reaper.database.connection import redact
from reaper.errors import ConfigError

LOG_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS!UTC}Z {level: <7} {message}"
LOG_ROTATION = "20 MB"
LOG_RETENTION = 10
DRIVER_LOGGERS = ("psycopg",)


class _DriverRecords(logging.Handler):
    """What a driver logs through Python's logging, into reaper's log (masked) at debug level."""

    def emit(self, record: logging.LogRecord) -> None:
        """Pass the record on."""
        logger.debug(f"{record.name}: {record.getMessage()}")


def _drivers_log_through_ours() -> None:
    # psycopg logs "error ignored terminating <psycopg.Pipeline ...>" after a refused batch; without
    # a handler, Python printed it raw to stderr, beside our one-line error.
    for name in DRIVER_LOGGERS:
        driver = logging.getLogger(name)
        driver.handlers = [_DriverRecords()]
        driver.propagate = False


def setup_logging(
    level: str,
    log_file: Path | None = None,
    json_lines: bool = False,
    secrets: Iterable[str] = (),
    file_level: str | None = None,
) -> None:
    """Send logs from ``level`` up to stderr and, when asked, from ``file_level`` (default: the same) up
    to a rotated file; never let a secret through."""
    hidden = tuple(secret for secret in secrets if secret)

    def mask(record: Any) -> None:
        record["message"] = redact(record["message"], hidden)

    logger.remove()
    logger.configure(patcher=mask)
    _drivers_log_through_ours()
    logger.add(sys.stderr, level=level, format=LOG_FORMAT, serialize=json_lines, backtrace=False, diagnose=False)
    if log_file is None:
        return
    try:
        logger.add(
            log_file,
            level=file_level or level,
            format=LOG_FORMAT,
            serialize=json_lines,
            rotation=LOG_ROTATION,
            retention=LOG_RETENTION,
            backtrace=False,
            diagnose=False,
        )
    except OSError as exc:
        raise ConfigError(f"cannot write the log file {str(log_file)!r} (REAPER_LOG_FILE): {exc.strerror}") from None
