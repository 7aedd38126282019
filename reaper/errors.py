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
    """The database could not be reached or refused a statement (converted from the driver's error in
    ``reaper.database.connection``, the one place that sees those).

    ``kind`` is the bounded label logs and metrics give it; ``fatal``: no wait or retry mends it;
    ``where``: what reaper was doing, once a caller has said it (the message then starts with it).
    """

    fatal = False

    def __init__(self, message: str, kind: str = "database", where: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.where = where


class LockConflict(DatabaseError):
    """A lock wait time-out or a deadlock: the same statement may well pass when tried again."""


class RowRefused(DatabaseError):
    """The database refused the values of a row: a constraint, a column without a default, a value it cannot hold."""

    def __init__(self, message: str, kind: str = "database", where: str = "", refused_by: str = "") -> None:
        super().__init__(message, kind, where)
        self.refused_by = refused_by or message  # what refused it: the constraint's name, as well as the driver says


class ConstraintRefused(RowRefused):
    """A constraint (a foreign key, most often) refused a write."""


class AccessDenied(DatabaseError):
    """The login or a privilege is refused: waiting will not mend it."""

    fatal = True


class Unreachable(DatabaseError):
    """The server cannot be reached, or dropped the session."""


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
