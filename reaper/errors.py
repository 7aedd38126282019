"""Our own error types and the command's exit codes: the CLI maps each error to its code, the daemon
to a metric label (its category)."""

import signal

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # a flag, setting, config file or table that does not fit
EXIT_LOCKED = 3  # another reaper holds the table's lock: this one skipped
EXIT_REFUSED = 4  # a large deletion was not confirmed
EXIT_INDEXES_MISSING = 5  # --check-indexes found a recommended index missing
EXIT_SIGNALLED = 128  # plus the signal's number, as a shell reports a command a signal ended
EXIT_INTERRUPTED = EXIT_SIGNALLED + signal.SIGINT
EXIT_OUTPUT_CLOSED = EXIT_SIGNALLED + signal.SIGPIPE  # the reader of the output went away (`| head`)


class ReaperError(Exception):
    """Base of every error reaper reports to its user as one line."""

    exit_code = EXIT_FAILED
    category = "error"


class ConfigError(ReaperError):
    """A setting, flag or config file is invalid."""

    exit_code = EXIT_USAGE
    category = "config"


class SchemaError(ConfigError):
    """The configured table, column or status vocabulary does not fit the real table."""

    category = "schema"


class DatabaseError(ReaperError):
    """The database could not be reached or refused a statement (converted from the driver's error in
    ``reaper.database.connection``, the one place that sees those).

    ``category`` is the bounded label logs and metrics give it (the metric label ``kind``); ``fatal``: no
    wait or retry mends it;
    ``where``: what reaper was doing, once a caller has said it (the message then starts with it).
    """

    fatal = False

    def __init__(self, message: str, category: str = "database", where: str = "") -> None:
        super().__init__(message)
        self.category = category
        self.where = where


class LockConflict(DatabaseError):
    """A lock wait time-out or a deadlock: the same statement may well pass when tried again."""


class RowRefused(DatabaseError):
    """The database refused the values of a row: a constraint, a column without a default, a value it cannot hold."""

    def __init__(self, message: str, category: str = "database", where: str = "", refused_by: str = "") -> None:
        super().__init__(message, category, where)
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

    exit_code = EXIT_LOCKED
    category = "locked"


class ArchiveError(ReaperError):
    """The archive could not be written (a full disk): the batch in hand was not deleted."""

    category = "archive"


class Interrupted(KeyboardInterrupt):
    """A manual run stopped at once by a signal (the second one: the first lets the batch in hand finish).

    A ``KeyboardInterrupt``, as Ctrl-C's own: SQLAlchemy then drops the connection it was using, and no
    ``except Exception`` can swallow it.
    """

    def __init__(self, signum: int) -> None:
        self.name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.name}")
        self.exit_code = EXIT_SIGNALLED + signum
