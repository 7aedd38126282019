"""Run ``reaper`` exactly as ``python -m reaper`` does, recording where its database time goes.

Used by ``bench/purge.py`` (not by reaper itself): ``python bench/profiled_reaper.py ARGS`` runs
``reaper.cli.command.main(ARGS)`` with a few SQLAlchemy hooks on the engine reaper creates, and at exit
writes to ``$BENCH_PROFILE_OUT`` a JSON document with:

- ``transactions``: every transaction as ``[seconds, wrote]``, from SQLAlchemy's begin (the first
  statement of a checked-out connection) to the end of the DBAPI commit or rollback; ``wrote`` is
  true when a DELETE or UPDATE ran inside it;
- ``statements``: per kind (``segment select``, ``delete``, ``update``, ``lock check``, ``other``),
  the count, the total and the longest time spent inside ``cursor.execute``;
- ``calls``: count and total time of the driver calls between statements: pool pre-pings,
  commits, rollbacks (including the pool's reset on return);
- ``wall_seconds``: from just before ``main`` to just after it.

The hooks cost a few microseconds per statement; nothing else about the run changes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

import reaper.cli.command
import reaper.database.connection

_transactions: list[list[Any]] = []
_open: dict[int, list[Any]] = {}  # id of the pooled connection -> [start, wrote]
_statements: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # count, total, longest
_calls: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])  # count, total


def _kind(statement: str) -> str:
    text = " ".join(statement.split()).upper()
    if "IS_USED_LOCK" in text or "PG_LOCKS" in text:
        return "lock check"
    if text.startswith("DELETE"):
        return "delete"
    if text.startswith("UPDATE"):
        return "update"
    if text.startswith("SELECT") and " ORDER BY " in text and " LIMIT " in text:
        return "segment select"
    return "other"


def _timed_call(name: str, function: Any, ends_transaction: bool) -> Any:
    def wrapper(connection: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(connection, *args, **kwargs)
        finally:
            ended = time.perf_counter()
            _calls[name][0] += 1
            _calls[name][1] += ended - started
            if ends_transaction:
                record = _open.pop(id(connection), None)
                if record is not None:
                    _transactions.append([ended - record[0], record[1]])

    return wrapper


def instrument(engine: Engine) -> Engine:
    """Hook statement timing, transaction bounds and driver calls onto ``engine``."""

    @event.listens_for(engine, "begin")
    def begin(conn: Any) -> None:
        _open[id(conn.connection)] = [time.perf_counter(), False]

    @event.listens_for(engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        seconds = time.perf_counter() - conn.info["bench_started"].pop()
        kind = _kind(statement)
        entry = _statements[kind]
        entry[0] += 1
        entry[1] += seconds
        entry[2] = max(entry[2], seconds)
        if kind in ("delete", "update"):
            record = _open.get(id(conn.connection))
            if record is not None:
                record[1] = True

    # The dialect's methods are replaced on this one engine to time each call: a profile, not reaper's code.
    dialect = engine.dialect
    dialect.do_ping = _timed_call("ping", dialect.do_ping, False)  # type: ignore[method-assign]  # timed in place
    dialect.do_commit = _timed_call("commit", dialect.do_commit, True)  # type: ignore[method-assign]  # timed in place
    dialect.do_rollback = _timed_call("rollback", dialect.do_rollback, True)  # type: ignore[method-assign]  # timed in place
    return engine


def main() -> int:
    out = Path(os.environ["BENCH_PROFILE_OUT"])
    create = reaper.database.connection.create_db_engine

    def create_instrumented(*args: Any, **kwargs: Any) -> Engine:
        return instrument(create(*args, **kwargs))

    reaper.cli.command.create_db_engine = create_instrumented  # type: ignore[assignment]  # every engine reaper makes is timed
    started = time.perf_counter()
    code = reaper.cli.command.main(sys.argv[1:])
    wall = time.perf_counter() - started
    out.write_text(json.dumps({
        "wall_seconds": wall,
        "transactions": _transactions,
        "statements": dict(_statements),
        "calls": dict(_calls),
    }))
    return code


if __name__ == "__main__":
    sys.exit(main())
