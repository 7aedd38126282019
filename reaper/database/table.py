"""The task table as it really is: reflected once, checked against the settings, read by role.

Nothing here trusts a configured identifier: the table and every column named in the settings
must exist in the reflected table, and SQL is only ever built from the reflected objects.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, Table, and_, case, func, inspect, select, tuple_
from sqlalchemy.engine import Connection, Engine, Inspector
from sqlalchemy.exc import NoSuchTableError
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import Integer

from reaper.database.celery_results import CeleryFailure
from reaper.database.columns import celery_failure, check_task_type_settings, checked_columns
from reaper.database.dialects import Dialect, dialect_of
from reaper.database.schema import ExistingIndex, reflected_indexes, unknown_types_quiet
from reaper.database.textfit import TextFit
from reaper.errors import SchemaError
from reaper.settings.model import Settings, Statuses, env_name
from reaper.settings.presets import preset_named

ACTIVE_STATUSES = ("pending", "running", "retry")
TERMINAL_STATUSES = ("success", "failure", "revoked")

# Which columns say how old a row of each status is: the first non-null one counts. The heartbeat
# column, when configured, comes before all of a running row's (see matching.py).
AGE_COLUMNS: dict[str, tuple[str, ...]] = {
    "running": ("started_at", "updated_at", "created_at"),
    "pending": ("created_at",),
    "retry": ("updated_at", "created_at"),
    "success": ("finished_at", "updated_at", "created_at"),
    "failure": ("finished_at", "updated_at", "created_at"),
    "revoked": ("finished_at", "updated_at", "created_at"),
}
# When some policy requeues, a pending row waits since its last write instead: a requeue restarts
# the wait, so a task set back to pending is not failed at once for its old creation time.
REQUEUED_PENDING_AGE_COLUMNS = ("updated_at", "created_at")


def casings(value: str) -> list[str]:
    """Return the spellings of ``value`` that applications commonly store, without duplicates."""
    return list(dict.fromkeys((value, value.lower(), value.upper(), value.capitalize(), value.title())))


def _recase_like(value: str, sample: str, sample_configured: str) -> str:
    """Spell ``value`` the way ``sample`` spells ``sample_configured``."""
    for transform in (str.upper, str.lower, str.capitalize, str.title):
        if sample == transform(sample_configured):
            return transform(value)
    return value


@dataclass
class TaskTable:
    """A reflected, checked task table and the vocabulary used to read and write it."""

    engine: Engine
    table: Table
    columns: dict[str, Column[Any]]
    statuses: Statuses
    zone: ZoneInfo
    pending_since_update: bool = False
    celery_failure: CeleryFailure | None = None  # a failure also stores a Celery exception
    dates_undated: bool = False  # active rows with no time get one when first seen (see undated.py)
    error_fit: TextFit = TextFit()
    # read with the columns, when the table was opened: what a one-shot run plans from (a daemon's pass
    # reads them again, so that an index added meanwhile is used; see ``plans``)
    indexes: tuple[ExistingIndex, ...] = ()
    _write_values: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        """The table's name."""
        return self.table.name

    @property
    def qualified_name(self) -> str:
        """The table's name with its schema, when one was set: what tells two tables apart in one database."""
        return f"{self.table.schema}.{self.table.name}" if self.table.schema else self.table.name

    @property
    def id(self) -> Column[Any]:
        """The primary-key column used for keyset batches."""
        return self.columns["id"]

    @property
    def key(self) -> tuple[Column[Any], ...]:
        """The columns that tell rows apart: the id, and the rest of the primary key when the id is a part of it.

        A table keyed by (id, shard) may hold one id twice: a write by id alone would change both
        rows, one of them never selected nor counted.
        """
        primary = list(self.table.primary_key.columns)
        if len(primary) > 1 and any(column.name == self.id.name for column in primary):
            return (self.id, *(column for column in primary if column.name != self.id.name))
        return (self.id,)

    def key_in(self, keys: Sequence[Sequence[Any]]) -> ColumnElement[bool]:
        """Return the condition that a row's key is one of ``keys`` (each the values of ``key``, in order).

        Integer ids are also bounded by their smallest and largest (``dialect.bounds_id_lists``): with
        a list of thousands of ids, PostgreSQL's planner chose to read the whole table for each batch
        (0.07x of a bare DELETE at 1 M rows, bench/plans.py), where the range lets it read the primary
        key's stretch.
        """
        if len(self.key) == 1:
            ids = [key[0] for key in keys]
            listed = self.dialect.one_of(self.id, ids)
            if ids and isinstance(self.id.type, Integer) and self.dialect.bounds_id_lists:
                return and_(listed, self.id.between(min(ids), max(ids)))
            return listed
        return tuple_(*self.key).in_([tuple(key) for key in keys])

    @property
    def status(self) -> Column[Any]:
        """The status column."""
        return self.columns["status"]

    def column(self, role: str) -> Column[Any] | None:
        """Return the column playing ``role``, or ``None`` when the table has none."""
        return self.columns.get(role)

    def enum_members(self) -> tuple[str, ...] | None:
        """Return the status column's ENUM members, or ``None`` when it is a plain string."""
        members = getattr(self.status.type, "enums", None)
        return tuple(members) if members else None

    def status_values(self, role: str) -> list[str]:
        """Return every stored spelling that means status ``role``, for an index-friendly ``IN``."""
        configured = getattr(self.statuses, role)
        members = self.enum_members()
        if members is not None:
            # A native ENUM rejects any literal that is not one of its members.
            return [member for member in members if member.lower() == configured.lower()]
        return casings(configured)

    def stored_spellings(self, conn: Connection, role: str) -> list[str]:
        """Return the spellings of status ``role`` that rows really hold, one per distinct match.

        Each candidate spelling is probed with ``status = :value LIMIT 1`` (an index look-up), all in
        one statement (a round trip per spelling was 40 ms of a run's start on PostgreSQL). A column
        that compares case-insensitively (MySQL's default collations) answers a probe with a row spelt
        differently; there one spelling finds every row, so one is returned.
        """
        values = self.status_values(role)
        probes = [select(self.status).where(self.status == value).limit(1).scalar_subquery() for value in values]
        found = conn.execute(select(*probes)).one() if probes else ()
        spellings: list[str] = []
        for value, stored in zip(values, found, strict=True):
            if stored is None:
                continue
            if stored != value:
                return [value]
            spellings.append(value)
        return spellings

    def held_spelling(self, conn: Connection, role: str) -> str | None:
        """The spelling of status ``role`` that some row holds, or ``None`` when no row has that status (an
        index look-up where an index leads with the status; else a read of the table until a match)."""
        stored = conn.execute(select(self.status).where(self.status_is(role)).limit(1)).scalar()
        return None if stored is None else str(stored)

    def status_is(self, role: str) -> ColumnElement[bool]:
        """Return the condition that a row has status ``role``, in any casing."""
        return self.status.in_(self.status_values(role))

    def role_of(self, stored: str | None) -> str:
        """Return the role name of a stored status value, or the value lower-cased if it has none."""
        if stored is None:
            return "unknown"
        lowered = stored.lower()
        for role, configured in self.statuses.model_dump().items():
            if configured.lower() == lowered:
                return role
        return lowered

    def age_roles(self, status_role: str) -> list[str]:
        """Return the roles of the columns whose first non-null value dates a row of ``status_role``."""
        roles = AGE_COLUMNS[status_role]
        if status_role == "pending" and self.pending_since_update:
            roles = REQUEUED_PENDING_AGE_COLUMNS
        role_by_column: dict[str, str] = {}  # column name -> its first role: one column playing two roles counts once
        for role in roles:
            if role in self.columns:
                role_by_column.setdefault(self.columns[role].name, role)
        return list(role_by_column.values())

    def age_columns(self, status_role: str) -> list[Column[Any]]:
        """Return the columns whose first non-null value dates a row of ``status_role``."""
        return [self.columns[role] for role in self.age_roles(status_role)]

    @property
    def dialect(self) -> Dialect:
        """The database's own ways (see ``reaper.database.dialects``)."""
        return dialect_of(self.engine)

    def before(self, column: Column[Any], moment: datetime) -> ColumnElement[bool]:
        """Return ``column < moment``, the moment converted to what the column stores."""
        return self.dialect.before(column, self.to_db(moment, column))

    def since(self, column: Column[Any], moment: datetime) -> ColumnElement[bool]:
        """Return ``column >= moment``: the negation of ``before`` for rows whose value is a timestamp."""
        return self.dialect.since(column, self.to_db(moment, column))

    def to_db(self, moment: datetime, column: Column[Any]) -> datetime:
        """Convert an aware UTC moment into what ``column`` stores (naive in the configured zone)."""
        if _stores_zone(column):
            return moment
        return moment.astimezone(self.zone).replace(tzinfo=None)

    def from_db(self, value: Any, column: Column[Any]) -> datetime | None:
        """Convert a timestamp read from ``column`` into an aware UTC datetime; ``None`` stays ``None``."""
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:  # SQLite text that is no timestamp: julianday() is NULL, so no policy matches it
                return None
        moment: datetime = value
        if moment.tzinfo is None:
            # Columns that store a zone arrive in the session's zone, which is UTC (see the dialects).
            moment = moment.replace(tzinfo=UTC if _stores_zone(column) else self.zone)
        return moment.astimezone(UTC)

    def write_value(self, conn: Connection, role: str) -> str:
        """Return the spelling of status ``role`` to write, in the table's own convention."""
        if role not in self._write_values:
            self._write_values[role] = self._resolve_write_value(conn, role)
        return self._write_values[role]

    def check_writable(self, role: str) -> None:
        """Raise ``SchemaError`` when the status column cannot hold status ``role`` (an ENUM without it)."""
        members = self.enum_members()
        if members is not None and not self.status_values(role):
            raise SchemaError(
                f"the ENUM of column {self.status.name!r} has no member for the {role} status "
                f"{getattr(self.statuses, role)!r} (members: {', '.join(members)}); "
                f"set {env_name(('statuses', role))}"
            )

    def spelling_unknown(self, role: str) -> bool:
        """Whether the spelling of status ``role`` to write is still to be found: not known already, and
        not fixed by an ENUM."""
        return role not in self._write_values and self.enum_members() is None

    def spelling_probes(self, role: str) -> list[ColumnElement[Any]]:
        """Return the aggregate that finds, in a pass over the whole table, the spelling of status ``role``
        that rows hold (see ``settle_write_value``); none where ``spelling_unknown`` says it is not needed."""
        if not self.spelling_unknown(role):
            return []
        return [func.max(case((self.status_is(role), self.status)))]

    def settle_write_value(self, conn: Connection, role: str, stored: str | None) -> None:
        """Fix the spelling of status ``role`` to write from what a pass over the table found with
        ``spelling_probes``: where no index leads with the status, looking it up at the first write
        reads the whole table again when no row holds it yet. Where none does, the casing of any status
        rows hold is a look-up that stops at its first row: as an aggregate of the pass, its test of
        every known spelling on each row made the pass a third slower (PostgreSQL, 1 M rows)."""
        if role not in self._write_values:
            sample = None if stored is not None else self._any_status_held(conn)
            self._write_values[role] = self._spelling_from(role, stored, sample)

    def _resolve_write_value(self, conn: Connection, role: str) -> str:
        if self.enum_members() is not None:
            self.check_writable(role)
            return str(self.status_values(role)[0])
        stored = self.held_spelling(conn, role)
        if stored is not None:
            return stored
        return self._spelling_from(role, None, self._any_status_held(conn))

    def _any_status_held(self, conn: Connection) -> str | None:
        """A status some row holds, in its stored spelling, for a status no row holds yet to follow its
        casing. One look-up for all of them: without an index on the status, each probe of a status no row
        holds reads the whole table."""
        return conn.execute(select(self.status).where(self.status.in_(self._every_status_value())).limit(1)).scalar()

    def _every_status_value(self) -> list[str]:
        return [value for other in self.statuses.model_dump() for value in self.status_values(other)]

    def _spelling_from(self, role: str, stored: str | None, sample: str | None) -> str:
        """The spelling of ``role`` to write: the one rows hold, else ``role``'s configured value cased like
        ``sample`` (a status some row holds), else as configured."""
        configured: str = getattr(self.statuses, role)
        if stored is not None:
            return str(stored)
        if sample is not None:
            return _recase_like(configured, str(sample), getattr(self.statuses, self.role_of(str(sample))))
        return configured

    def fit_error(self, text: str) -> str:
        """Return ``text`` as the error column holds it: its characters, cut to its size (see ``textfit``)."""
        return self.error_fit.fit(text)


def _stores_zone(column: Column[Any]) -> bool:
    # A type says it, whatever the engine: MySQL's TIMESTAMP is stored in UTC and read in the session's
    # zone, which its dialect sets to UTC. A column has that type only once SQLAlchemy's MySQL dialect is
    # loaded: looked up, not imported, it costs the other databases nothing at start (about 50 ms).
    mysql = sys.modules.get("sqlalchemy.dialects.mysql")
    mysql_timestamp = mysql is not None and isinstance(column.type, mysql.TIMESTAMP)
    return bool(getattr(column.type, "timezone", False)) or mysql_timestamp


def _reflect(engine: Engine, settings: Settings) -> tuple[Table, list[ExistingIndex]]:
    """The table's columns and primary key, and its indexes, read on one connection.

    Built from the inspector's columns and key rather than by SQLAlchemy's ``autoload_with``, which
    also reads foreign keys, check constraints, comments and options that reaper never uses: eleven
    catalog queries on PostgreSQL where these need five (a run's start, 0.1 s of it at 1 M rows).
    """
    schema, url = settings.table_schema, settings.safe_database_url
    with engine.connect() as conn, unknown_types_quiet():  # an unknown type is archived as text (values.py)
        inspector = inspect(conn)
        if schema is not None and schema not in inspector.get_schema_names():
            raise SchemaError(f"schema {schema!r} not found in {url} (REAPER_TABLE_SCHEMA)")
        try:
            table = _described_table(inspector, settings.table, schema)
        except NoSuchTableError:
            raise _no_such_table(inspector, settings) from None
        return table, reflected_indexes(inspector, settings.table, schema)


def _described_table(inspector: Inspector, name: str, schema: str | None) -> Table:
    """The table as ``inspector`` describes it: each column's name, type and nullability, and the primary key."""
    described = inspector.get_columns(name, schema)
    columns = [Column(column["name"], column["type"], nullable=column["nullable"]) for column in described]
    key = inspector.get_pk_constraint(name, schema)
    primary = PrimaryKeyConstraint(*key["constrained_columns"], name=key.get("name"))
    return Table(name, MetaData(), *columns, primary, schema=schema)


def _no_such_table(inspector: Inspector, settings: Settings) -> SchemaError:
    schema, url = settings.table_schema, settings.safe_database_url
    names = inspector.get_table_names(schema=schema)
    where = url if schema is None else f"schema {schema!r} of {url}"
    hint = f"; tables there: {', '.join(sorted(names)[:10])}" if names else "; there are no tables there"
    return SchemaError(f"table {settings.table!r} not found in {where} (REAPER_TABLE){hint}")


def check_fit(table: TaskTable, settings: Settings) -> None:
    """Raise ``SchemaError`` when ``settings`` (task types, requeue) ask for columns ``table`` lacks."""
    check_task_type_settings(table.table, table.columns, settings)


def open_table(engine: Engine, settings: Settings) -> TaskTable:
    """Reflect the configured table and check every configured column against it."""
    table, indexes = _reflect(engine, settings)
    columns = checked_columns(table, settings)
    check_task_type_settings(table, columns, settings)
    preset = preset_named(settings.preset)
    error_fit = TextFit()
    if "error" in columns:
        with engine.connect() as conn:
            error_fit = dialect_of(engine).text_fit(conn, columns["error"])
    return TaskTable(
        engine=engine,
        table=table,
        columns=columns,
        statuses=settings.statuses,
        zone=ZoneInfo(settings.database_timezone),
        pending_since_update=settings.rescues(),
        celery_failure=celery_failure(table, columns, settings),
        dates_undated=preset is not None and preset.dates_undated,
        error_fit=error_fit,
        indexes=tuple(indexes),
    )
