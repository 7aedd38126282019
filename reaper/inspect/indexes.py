"""The indexes the policies and statistics need, which of them a table lacks, and how to add them.

Each policy reads its matches along (status, first age column, id) (see ``selection``; for running
tasks the heartbeat column comes first when one is configured), so that
index lets a batch read about as many entries as it returns; the statistics count rows created in
the last day, served by (created_at). On MySQL and MariaDB, InnoDB appends the primary key to
every secondary index, and SQLite appends the rowid (which an INTEGER PRIMARY KEY is), so there an
index on (status, age column) already serves. A policy that no index serves walks the primary key
instead (see ``plans``): correct, one pass over the table, but slower than reading its matches
alone. reaper only recommends: it never changes a schema by itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Index, func, select
from sqlalchemy.schema import CreateIndex

from reaper.database.table import TaskTable
from reaper.engine.counting import count_policy
from reaper.engine.plans import Plan, plan_policy, serving_index
from reaper.policy.catalog import STANDARD_SPECS
from reaper.policy.policies import Policy

IDENTIFIER_LIMIT = 60


@dataclass(frozen=True)
class IndexAdvice:
    """One recommended index: what it serves, its columns, whether the table has it, its DDL."""

    purpose: str
    columns: tuple[str, ...]
    present: bool
    create_statement: str


def _wanted(table: TaskTable) -> dict[tuple[str, ...], str]:
    """The indexes the standard policies want, each with the policies it serves (one index may serve several)."""
    wanted: dict[tuple[str, ...], str] = {}
    for spec in STANDARD_SPECS:
        heartbeat = table.column("heartbeat_at") if spec.heartbeat is not None else None
        first_age_column = heartbeat if heartbeat is not None else table.age_columns(spec.status)[0]
        columns = (table.status.name, first_age_column.name, table.id.name)
        wanted[columns] = f"{wanted[columns]}, {spec.name}" if columns in wanted else spec.name
    wanted.setdefault((table.columns["created_at"].name,), "statistics (created in the last 24 hours)")
    return wanted


def _index_name(table_name: str, columns: tuple[str, ...]) -> str:
    name = f"ix_{table_name}_{'_'.join(columns)}"
    if len(name) > IDENTIFIER_LIMIT:
        name = f"ix_{table_name[:30]}_{hashlib.sha256(name.encode()).hexdigest()[:12]}"
    return name


def check_indexes(table: TaskTable) -> list[IndexAdvice]:
    """Return every recommended index and whether an index the table had when opened starts with its columns."""
    existing = list(table.indexes)
    advice = []
    for columns, purpose in _wanted(table).items():
        if len(columns) > 1 and columns[-1] == table.id.name:  # a policy's: present when it serves, as a plan
            present = serving_index(table, columns[:-1], existing) is not None
        else:
            present = any(index.columns[: len(columns)] == columns for index in existing)
        index = Index(_index_name(table.name, columns), *(table.table.c[name] for name in columns))
        statement = str(CreateIndex(index).compile(dialect=table.engine.dialect)).strip()
        advice.append(IndexAdvice(purpose, columns, present, statement + ";"))
    return advice


def missing_indexes_line(advice: Sequence[IndexAdvice]) -> str | None:
    """One line for the recommended indexes the table lacks (``2 recommended indexes missing: ...``), or ``None``."""
    missing = sum(not item.present for item in advice)
    if not missing:
        return None
    return f"{missing} recommended index{'' if missing == 1 else 'es'} missing: reaper --check-indexes"


@dataclass(frozen=True)
class PlanReport:
    """A rule's plan, what it matches now, and how many rows a run reads to find them that way."""

    plan: Plan
    matched: int
    rows_read: int  # the whole table along the primary key; the matches along an index

    def describe(self) -> str:
        """Say the plan and, for a walk along the primary key, what the missing index would save."""
        if self.plan.index is not None:
            return self.plan.describe()
        return (
            f"{self.plan.describe()}: reads all {self.rows_read:,} rows to find {self.matched:,}; "
            f"the index would read about {self.matched:,}"
        )

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form used by ``--check-indexes --json`` (one item of ``plans``)."""
        return {**self.plan.to_json(), "matched": self.matched, "rows_read": self.rows_read}


def plan_reports(table: TaskTable, policies: Sequence[Policy], now: datetime) -> list[PlanReport]:
    """Return each rule's plan with what it matches at ``now`` and the rows a run reads to find them."""
    indexes = list(table.indexes)
    with table.engine.connect() as conn:
        table_rows = int(conn.execute(select(func.count()).select_from(table.table)).scalar_one())
    reports = []
    for policy in policies:
        plans = plan_policy(table, policy, indexes)
        for rule, count in count_policy(table, policy, now, plans).items():
            plan = plans[rule]
            reports.append(PlanReport(plan, count.matched, count.matched if plan.index else table_rows))
    return reports


def render_index_report(advice: list[IndexAdvice], table_name: str, plans: Sequence[PlanReport] = ()) -> str:
    """Return the ``--check-indexes`` report: each index, the statements for the missing ones, the plans."""
    lines = [f"Indexes reaper recommends on {table_name}:"]
    for item in advice:
        state = "present" if item.present else "MISSING"
        lines.append(f"  {state:<8} ({', '.join(item.columns)})  for {item.purpose}")
    missing = [item for item in advice if not item.present]
    if missing:
        lines += ["", "To add the missing ones (reaper never changes the schema itself):"]
        lines += [f"  {item.create_statement}" for item in missing]
    else:
        lines.append("All recommended indexes are present.")
    if plans:
        lines += ["", "How each policy reads its matches now:"]
        for report in plans:
            scope = report.plan.policy if report.plan.rule == "*" else f"{report.plan.policy} [{report.plan.rule}]"
            lines.append(f"  {scope:<22} {report.describe()}")
    return "\n".join(lines)

