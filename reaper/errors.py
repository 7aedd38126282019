"""Our own error types: the CLI maps each to an exit code, the daemon to a metric label."""

import signal


class ReaperError(Exception):
    """Base of every error reaper reports to its user as one line."""

    exit_code = 1
    kind = "error"


class ConfigError(ReaperError):
    """A setting, flag or config file is invalid."""

    exit_code = 2
    kind = "config"


class SchemaError(ConfigError):
    """The configured table, column or status vocabulary does not fit the real table."""

    kind = "schema"


class DatabaseError(ReaperError):
    """The database could not be reached or refused a statement."""

    def __init__(self, message: str, kind: str = "database") -> None:
        super().__init__(message)
        self.kind = kind


class LockHeld(ReaperError):
    """Another reaper is running on the same table; this one skips."""

    exit_code = 3
    kind = "locked"


class ArchiveError(ReaperError):
    """The archive could not be written (a full disk): the batch in hand was not deleted."""

    kind = "archive"


class Interrupted(KeyboardInterrupt):
    """A manual run stopped at once by a signal (the second one: the first lets the batch in hand finish).

    A ``KeyboardInterrupt``, as Ctrl-C's own: SQLAlchemy then drops the connection it was using, and no
    ``except Exception`` can swallow it.
    """

    def __init__(self, signum: int) -> None:
        self.name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.name}")
        self.exit_code = 128 + signum
