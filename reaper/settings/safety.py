"""What keeps deletions recoverable and visible: the archive, the audit log, the confirmation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SafetySettings(BaseModel):
    """Where deleted rows and the audit trail go, and from how many deletions a manual run asks first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    archive: Literal["none", "jsonl", "table"] = "none"
    archive_dir: Path = Path("reaper-archive")
    archive_table: str | None = None
    audit_log: Path | None = Path("reaper-audit.jsonl")
    confirm_above: int = Field(10000, ge=0, strict=True)

    @field_validator("audit_log", "archive_table", mode="before")
    @classmethod
    def _empty_means_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value
