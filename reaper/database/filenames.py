"""Names from the database made into file names: never a path, never two names in one file."""

from __future__ import annotations

import hashlib
import re

UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_KEPT = 100  # of the name's own characters: a file name has at most 255 bytes


def file_safe(name: str) -> str:
    """Return ``name`` fit to be part of a file name inside a directory of ours.

    Letters, digits, ``_`` and ``-`` are kept and anything else becomes ``_`` (so ``../escape`` and
    ``jobs/eu`` stay in the directory); a name changed or shortened gets 8 hex digits of its hash,
    so that ``jobs/eu`` and ``jobs_eu`` never share a file.
    """
    safe = UNSAFE.sub("_", name)
    if safe == name and len(name) <= MAX_KEPT:
        return name
    return f"{safe[:MAX_KEPT]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
