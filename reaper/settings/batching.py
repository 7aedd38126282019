"""Batches: how many rows a write transaction takes, how fast they grow, and how long a run may go on.

The limits live here, below the engine that applies them (``engine.sizing``), because the settings
bound ``REAPER_BATCH_SIZE`` by them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# The most rows (or ids, for a walk along the primary key) a grown batch covers when it is deleted
# by range (``ranges``): it bounds what a batch holds in memory (its ids, at most) whatever the
# server's speed; the target time, not this, is what keeps transactions short.
MAX_BATCH_SIZE = 100_000
# The most ids one statement binds (``WHERE id IN (...)``), and so the most rows a batch read as ids
# holds: PostgreSQL's protocol takes at most 65,535 parameters, SQLite 32,766 by default (999 before
# 3.32). Also the largest REAPER_BATCH_SIZE.
MAX_ID_LIST = 10_000


class BatchSettings(BaseModel):
    """The size and pace of batches, and how long a run and a batch's retries may take."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(1000, ge=1, le=MAX_ID_LIST, strict=True)  # the first batch's; set, the most (sizing)
    batch_time_seconds: float = Field(0.25, ge=0, le=60, allow_inf_nan=False, strict=True)  # 0: fixed batches
    sleep_seconds: float = Field(0.0, ge=0, le=3600, allow_inf_nan=False, strict=True)
    max_runtime_seconds: float | None = Field(None, gt=0, allow_inf_nan=False, strict=True)
    max_retries: int = Field(3, ge=0, le=20, strict=True)

    @property
    def ceiling(self) -> int:
        """How far batches may grow: ``batch_size`` when a source gave it, else ``MAX_BATCH_SIZE``.

        A size chosen on purpose is a limit batches never exceed; only one left at its default grows.
        """
        return self.batch_size if "batch_size" in self.model_fields_set else MAX_BATCH_SIZE
