"""Pausing a writing run while its server is busy or a replica lags: gentle by measurement.

- ``--max-load NAME=VALUE[,NAME=VALUE...]``: while any NAME reads above its VALUE, the run pauses,
  reading again every ``POLL_SECONDS``, then goes on;
- ``--critical-load`` (same form): above it the run stops before its next batch;
- ``--max-replica-lag S``: the run pauses while a replica (``--replica URL``; on PostgreSQL without
  one, the standbys the primary lists) lags more than S seconds, or shows no lag at all (replication
  stopped, or it cannot be reached): a lag that cannot be read is never taken for none;
- ``--max-pause S``: a run that has paused S seconds in a row stops, as critical load stops it.

The run asks its ``Throttle`` before the first batch and between batches. A clear reading is trusted
for ``REREAD_SECONDS``, so the server is read at most a few times a second however quick the
batches. What is read on each database is its dialect's (``reaper.database.dialects``); the settings
are parsed in ``settings.throttling``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from loguru import logger
from sqlalchemy.engine import Connection, Engine, make_url

from reaper.database.connection import SessionLimits, create_db_engine, database_errors
from reaper.database.dialects import Lag, dialect_of
from reaper.errors import AccessDenied, ConfigError, DatabaseError
from reaper.settings.throttling import DEFAULT_MAX_PAUSE_SECONDS, ThrottleSettings

POLL_SECONDS = 0.5
REREAD_SECONDS = 0.25
REPLICA_LAG = "replica_lag"
REPLICA_UNAVAILABLE = "replica_unavailable"
# A replica that does not answer must not hold a pause's reading for long.
REPLICA_LIMITS = SessionLimits(lock_timeout_seconds=1.0, statement_timeout_seconds=5.0, connect_timeout_seconds=3)


@dataclass(frozen=True)
class Over:
    """A limit exceeded: the reason it is counted under, what was seen, and whether it stops the run."""

    reason: str
    said: str
    critical: bool = False


class Throttle:
    """Decides, before each batch, whether the run goes on, waits, or stops; counts the seconds waited."""

    def __init__(
        self,
        look: Callable[[], list[Over]],
        max_pause_seconds: float = DEFAULT_MAX_PAUSE_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.look = look
        self.max_pause_seconds = max_pause_seconds
        self.sleep = sleep
        self.timer = timer
        self.seconds: dict[str, float] = {}  # reason -> seconds paused for it
        self.stop_reason: str | None = None
        self._clear_at: float | None = None

    @property
    def total_seconds(self) -> float:
        """Seconds paused in all."""
        return sum(self.seconds.values())

    def wait(self, stop: Callable[[], str | None] = lambda: None) -> str | None:
        """Return ``None`` when the next batch may start, at once or after a pause; else why the run stops.

        ``stop`` is asked at each reading of a pause, so that a stop request or the end of the run's
        time ends a pause too.
        """
        if self._clear_at is not None and self.timer() - self._clear_at < REREAD_SECONDS:
            return None
        started = None
        while True:
            over = self.look()
            paused = 0.0 if started is None else self.timer() - started
            own = self._stop_reason(over, paused)
            if own is not None:
                self.stop_reason = own
                logger.warning(f"stopping the run: {own}")
                return own
            requested = stop() if over else None
            if requested is not None:
                return requested
            if not over:
                self._clear_at = self.timer()
                if started is not None:
                    logger.info(f"resuming after a pause of {paused:.1f} s")
                return None
            if started is None:
                started = self.timer()
                seen = "; ".join(item.said for item in over)
                # a warning: a person at a terminal sees why the run stands still
                logger.warning(f"pausing: {seen} (reading again every {POLL_SECONDS:g} s)")
            self._pause(over[0].reason)

    def _stop_reason(self, over: list[Over], paused: float) -> str | None:
        critical = next((item for item in over if item.critical), None)
        if critical is not None:
            return f"critical load: {critical.said}"
        if over and paused >= self.max_pause_seconds:
            return f"paused {paused:.0f} s in a row, the most --max-pause allows ({over[0].said})"
        return None

    def _pause(self, reason: str) -> None:
        before = self.timer()
        self.sleep(POLL_SECONDS)
        self.seconds[reason] = self.seconds.get(reason, 0.0) + self.timer() - before


@dataclass(frozen=True)
class _Replica:
    name: str  # for messages: where it is, never its password
    read: Callable[[], Lag]


class _Watch:
    """Reads the load and the replicas' lag, and says what is over its limit (critical first)."""

    def __init__(self, limits: ThrottleSettings, engine: Engine, replicas: Sequence[_Replica]) -> None:
        self.limits = limits
        self.engine = engine
        self.replicas = replicas
        self.names = list(dict.fromkeys(limit.name for limit in limits.critical_load + limits.max_load))

    def __call__(self) -> list[Over]:
        over: list[Over] = []
        if self.names:
            with self.engine.connect() as conn:
                values = dialect_of(conn).read_load(conn, self.names)
            for flag, limits, critical in (("--critical-load", self.limits.critical_load, True),
                                           ("--max-load", self.limits.max_load, False)):
                for limit in limits:
                    value = values.get(limit.name)
                    if value is not None and value > limit.value:
                        said = f"{limit.name} = {value:g}, above {flag} {limit.value:g}"
                        over.append(Over(limit.name, said, critical))
        most = self.limits.max_replica_lag_seconds
        for replica in self.replicas:
            lag = replica.read()
            if lag.seconds is None:
                over.append(Over(REPLICA_UNAVAILABLE, f"{replica.name} {lag.problem}"))
            elif most is not None and lag.seconds > most:
                said = f"{replica.name} lags {lag.seconds:g} s, above --max-replica-lag {most:g}"
                over.append(Over(REPLICA_LAG, said))
        return over


def _where(url: str) -> str:
    parsed = make_url(url)
    return f"replica {parsed.host or 'localhost'}{f':{parsed.port}' if parsed.port else ''}"


def _check_load(engine: Engine, limits: ThrottleSettings, secrets: Iterable[str]) -> None:
    """Refuse, before anything runs, a NAME the server does not know or cannot give as a number, and a
    login that cannot see what it would watch."""
    names = [limit.name for limit in limits.critical_load + limits.max_load]
    reads_standbys = limits.max_replica_lag_seconds is not None and not limits.replica_urls
    if not names and not reads_standbys:
        return
    dialect = dialect_of(engine)
    try:
        with database_errors("cannot read the server's load", secrets), engine.connect() as conn:
            values = dialect.read_load(conn, names) if names else {}
            unseen = dialect.load_unseen(conn)
    except AccessDenied as exc:  # a privilege to grant, not a database that failed
        raise ConfigError(f"--max-load, --critical-load: {exc}") from None
    if unseen is not None:
        raise ConfigError(unseen)
    for flag, setting, given in (("--critical-load", "REAPER_CRITICAL_LOAD", limits.critical_load),
                                 ("--max-load", "REAPER_MAX_LOAD", limits.max_load)):
        for limit in given:
            if limit.name not in values:
                raise ConfigError(f"{flag} ({setting}): unknown NAME {limit.name!r}: the server has no "
                                  "such status variable (see SHOW GLOBAL STATUS)")
            if values[limit.name] is None:
                raise ConfigError(f"{flag} ({setting}): {limit.name} is not a number on this server")


def lag_reader(engine: Engine, read: Callable[[Connection], Lag], secrets: Iterable[str]) -> Callable[[], Lag]:
    """Return a callable that reads a lag on ``engine``; an error becomes a ``Lag`` that says what went wrong."""

    def read_lag() -> Lag:
        try:
            with database_errors("cannot be read", secrets), engine.connect() as conn:
                return read(conn)
        except DatabaseError as exc:
            return Lag(None, str(exc), lasting=exc.fatal)

    return read_lag


def _replicas(limits: ThrottleSettings, engine: Engine, engines: Sequence[Engine],
              secrets: Iterable[str]) -> list[_Replica]:
    if limits.max_replica_lag_seconds is None:
        return []
    dialect = dialect_of(engine)
    if not engines and dialect.standbys is not None:  # the standbys the primary lists
        return [_Replica(dialect.standbys, lag_reader(engine, dialect.standby_lag, secrets))]
    return [_Replica(_where(url), lag_reader(replica, dialect_of(replica).replica_lag, secrets))
            for url, replica in zip(limits.replica_urls, engines, strict=True)]


@contextmanager
def open_throttle(
    limits: ThrottleSettings,
    engine: Engine,
    secrets: Iterable[str] = (),
    sleep: Callable[[float], None] = time.sleep,
    timer: Callable[[], float] = time.monotonic,
) -> Iterator[Throttle | None]:
    """The run's throttle on ``engine``'s server (``None`` when nothing is watched).

    The load's names are checked on the server, and each replica that answers must be one, before
    anything runs (``ConfigError``); the replicas' connections are closed at the end.
    """
    if not limits.enabled:
        yield None
        return
    secrets = tuple(secrets)
    _check_load(engine, limits, secrets)
    engines = [create_db_engine(make_url(url), REPLICA_LIMITS) for url in limits.replica_urls]
    try:
        replicas = _replicas(limits, engine, engines, secrets)
        for replica in replicas:
            lag = replica.read()
            if lag.lasting:
                raise ConfigError(f"--replica (REAPER_REPLICA_URLS): {replica.name} {lag.problem}")
        yield Throttle(_Watch(limits, engine, replicas), limits.max_pause_seconds, sleep, timer)
    finally:
        for replica_engine in engines:
            replica_engine.dispose()

