"""How fast can any batched purge be? Raw batched DELETE strategies against one bare DELETE.

``bench/purge.py`` measures reaper; this script measures what batching itself costs, with no reaper
and no SQLAlchemy in the way: the same MariaDB table as ``purge.py`` (built by its code), purged of
its old successes by, side by side in one run:

- ``bare``: one ``DELETE ... WHERE status = 'success' AND completed_at < ?`` in one transaction;
- ``in-list``: keyset batches read as ids along (status, completed_at, id), each deleted with
  ``WHERE id IN (...) AND <condition>`` and committed (reaper's path before the range purge);
- ``range``: the batch's last position read from the index (``LIMIT 1 OFFSET n-1``), then one
  ``DELETE ... WHERE <condition> AND <position up to it>`` per batch (reaper's range purge);
- ``pk-chunks``: ``DELETE ... WHERE id >= a AND id < a + n AND <condition>`` along the primary key;
- ``pk+return``: the same with ``RETURNING id``, read back (what reading the ids back costs).

Each strategy runs on a fresh copy of the table; every batched one commits once per batch, as a
gentle purge must. ``--walk-sizes`` adds the key walk at other batch sizes (what a commit every
1,000 rows costs against fewer, larger batches). ``--database sqlite`` runs the bare DELETE and the
key walks on SQLite (its rollback journal and ``synchronous=FULL``, as ``purge.py``).
Usage: ``python bench/batch_ceiling.py [--rows N] [--batch-size N] [--walk-sizes N,N] [--database D]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests"), str(HERE.parent)]

import purge  # noqa: E402  (bench/purge.py: the table, its data and the MariaDB server)

CONDITION = "status = 'success' AND completed_at < %s"
Strategy = Callable[[Any, Any, str, int], tuple[int, int]]


def bare(conn: Any, cur: Any, cut: str, size: int) -> tuple[int, int]:
    deleted = cur.execute(f"DELETE FROM processing_tasks WHERE {CONDITION}", (cut,))
    conn.commit()
    return deleted, 1


def _after(after: tuple[Any, Any] | None) -> tuple[str, tuple[Any, ...]]:
    if after is None:
        return "", ()
    return " AND completed_at >= %s AND (completed_at > %s OR id > %s)", (after[0], after[0], after[1])


def in_list(conn: Any, cur: Any, cut: str, size: int) -> tuple[int, int]:
    deleted = batches = 0
    after = None
    while True:
        bound, params = _after(after)
        cur.execute(f"SELECT completed_at, id FROM processing_tasks WHERE {CONDITION}{bound} "
                    "ORDER BY completed_at, id LIMIT %s", (cut, *params, size))
        rows = cur.fetchall()
        if not rows:
            return deleted, batches
        marks = ", ".join(["%s"] * len(rows))
        deleted += cur.execute(f"DELETE FROM processing_tasks WHERE id IN ({marks}) AND {CONDITION}",
                               (*(row[1] for row in rows), cut))
        conn.commit()
        batches += 1
        after = rows[-1]


def by_range(conn: Any, cur: Any, cut: str, size: int) -> tuple[int, int]:
    deleted = batches = 0
    after = None
    while True:
        bound, params = _after(after)
        cur.execute(f"SELECT completed_at, id FROM processing_tasks WHERE {CONDITION}{bound} "
                    "ORDER BY completed_at, id LIMIT 1 OFFSET %s", (cut, *params, size - 1))
        last = cur.fetchone()
        upto, upto_params = ("", ()) if last is None else (
            " AND completed_at <= %s AND (completed_at < %s OR id <= %s)", (last[0], last[0], last[1]))
        deleted += cur.execute(f"DELETE FROM processing_tasks WHERE {CONDITION}{bound}{upto}",
                               (cut, *params, *upto_params))
        conn.commit()
        batches += 1
        if last is None:
            return deleted, batches
        after = last


def pk_chunks(conn: Any, cur: Any, cut: str, size: int) -> tuple[int, int]:
    deleted = batches = 0
    cur.execute("SELECT MIN(id), MAX(id) FROM processing_tasks")
    low, high = cur.fetchone()
    for start in range(low, high + 1, size):
        deleted += cur.execute(f"DELETE FROM processing_tasks WHERE id >= %s AND id < %s AND {CONDITION}",
                               (start, start + size, cut))
        conn.commit()
        batches += 1
    return deleted, batches


def pk_chunks_returning(conn: Any, cur: Any, cut: str, size: int) -> tuple[int, int]:
    deleted = batches = 0
    cur.execute("SELECT MIN(id), MAX(id) FROM processing_tasks")
    low, high = cur.fetchone()
    for start in range(low, high + 1, size):
        cur.execute(f"DELETE FROM processing_tasks WHERE id >= %s AND id < %s AND {CONDITION} RETURNING id",
                    (start, start + size, cut))
        deleted += len(cur.fetchall())
        conn.commit()
        batches += 1
    return deleted, batches


class SQLiteCursor:
    """A sqlite3 cursor that speaks the strategies' dialect: ``%s`` markers, ``execute`` returns the row count."""

    def __init__(self, conn: Any) -> None:
        self.cursor = conn.cursor()

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        return self.cursor.execute(sql.replace("%s", "?"), params).rowcount

    def fetchone(self) -> Any:
        return self.cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self.cursor.fetchall()


def plan_for(args: argparse.Namespace) -> list[tuple[str, Strategy, int]]:
    """The strategies to run, in order, each with its batch size (0: one transaction)."""
    walks = [("pk-chunks", pk_chunks, int(size)) for size in args.walk_sizes.split(",") if size]
    if args.database == "sqlite":
        return [("bare", bare, 0), ("pk-chunks", pk_chunks, args.batch_size), *walks, ("bare", bare, 0)]
    return [
        ("bare", bare, 0), ("in-list", in_list, args.batch_size), ("range", by_range, args.batch_size),
        ("pk-chunks", pk_chunks, args.batch_size), ("pk+return", pk_chunks_returning, args.batch_size),
        *walks, ("bare", bare, 0),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--walk-sizes", default="", help="also walk the key in batches of these sizes: 10000,50000")
    parser.add_argument("--database", choices=("mariadb", "sqlite"), default="mariadb")
    args = parser.parse_args()
    plan = plan_for(args)
    # removed at the end (and at exit, should the start fail): a run leaves nothing in /tmp
    scratch = tempfile.TemporaryDirectory(prefix="reaper-batch-ceiling-")
    workdir = Path(scratch.name)
    backend: Any = (purge.SQLiteBackend(args.rows, workdir, True) if args.database == "sqlite"
                    else purge.MariaDBBackend(args.rows, workdir, True, 512, True))
    try:
        print(f"{backend.version()}, {args.rows:,} rows, batches of {args.batch_size:,}", flush=True)
        print(f"working files in {workdir}, removed at the end", flush=True)
        backend.build_template(purge.utc_now(), lambda table: 0.0)
        cut = purge.cut_offs(purge.utc_now())[0]
        bare_rate = None
        for name, strategy, size in plan:
            backend.rebuild()
            conn = backend._connect() if args.database == "sqlite" else backend._connect(autocommit=False)
            try:
                cur = SQLiteCursor(conn) if args.database == "sqlite" else conn.cursor()
                started = time.perf_counter()
                deleted, batches = strategy(conn, cur, cut, size)
                seconds = time.perf_counter() - started
            finally:
                conn.close()
            rate = deleted / seconds
            bare_rate = bare_rate or rate
            label = f"{name} {size}" if size else name
            print(f"{label:<16} {deleted:>9,} rows {seconds:7.2f} s {rate:>9,.0f} rows/s {rate / bare_rate:5.2f}x "
                  f"of the first bare DELETE, {batches:,} transactions", flush=True)
    finally:
        backend.close()
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
