"""The batch limits: how many rows (or ids) a batch may hold.

The limits live here, below the engine that applies them (``engine.sizing``), because the settings
bound ``REAPER_BATCH_SIZE`` by them.
"""

from __future__ import annotations

# The most rows (or ids, for a walk along the primary key) a grown batch covers when it is deleted
# by range (``ranges``): it bounds what a batch holds in memory (its ids, at most) whatever the
# server's speed; the target time, not this, is what keeps transactions short.
MAX_BATCH_SIZE = 100_000
# The most ids one statement binds (``WHERE id IN (...)``), and so the most rows a batch read as ids
# holds: PostgreSQL's protocol takes at most 65,535 parameters, SQLite 32,766 by default (999 before
# 3.32). Also the largest REAPER_BATCH_SIZE.
MAX_ID_LIST = 10_000

