"""Text that fits its column: the reason reaper writes into the error column is always accepted.

A column limits its text in characters (``VARCHAR(n)``, ``CHAR(n)``) or in bytes (MySQL's
``TINYTEXT`` holds 255 bytes, ``TEXT`` 65,535), and holds only the characters of its character set
(a MySQL ``latin1`` column, ``utf8mb3`` without characters beyond U+FFFF, a PostgreSQL database in
``LATIN1``). In strict mode MySQL refuses the whole statement otherwise (``Data too long``,
``Incorrect string value``), which would fail every batch of every run. So a character the column
cannot hold becomes ``?`` (as MySQL's non-strict mode writes it), and a text too long is cut,
between characters, and ends with ``...``. What a column holds is each database's to say (its
dialect's ``text_fit``).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, String

REPLACEMENT = "?"
ELLIPSIS = "..."  # ASCII dots: every character set holds them


@dataclass(frozen=True)
class TextFit:
    """What a text column holds: at most ``max_chars`` characters, ``max_bytes`` bytes, in ``codec``."""

    max_chars: int | None = None
    max_bytes: int | None = None
    codec: str = "utf-8"
    bmp_only: bool = False  # no character beyond U+FFFF (MySQL's utf8mb3 and ucs2)

    def fit(self, value: str) -> str:
        """Return ``value`` with what the column cannot hold replaced, cut (with dots) to its size."""
        value = self._representable(value)
        if self._fits(value):
            return value
        for end in range(len(value) - 1, 0, -1):
            if self._fits(value[:end] + ELLIPSIS):
                return value[:end] + ELLIPSIS
        end = len(value)  # a column too short even for the dots: the start of the text
        while end and not self._fits(value[:end]):
            end -= 1
        return value[:end]

    def _holds(self, character: str) -> bool:
        if self.bmp_only and ord(character) > 0xFFFF:
            return False
        try:
            character.encode(self.codec)
        except UnicodeEncodeError:
            return False
        return True

    def _representable(self, value: str) -> str:
        try:  # the whole text at once first: a batch writes a reason per row
            value.encode(self.codec)
            if not self.bmp_only or all(ord(character) <= 0xFFFF for character in value):
                return value
        except UnicodeEncodeError:
            pass
        return "".join(character if self._holds(character) else REPLACEMENT for character in value)

    def _fits(self, value: str) -> bool:
        if self.max_chars is not None and len(value) > self.max_chars:
            return False
        return self.max_bytes is None or len(value.encode(self.codec)) <= self.max_bytes


def python_codec(name: str | None, aliases: dict[str, str] | None = None) -> str:
    """Return the Python codec of a database's character set name; ASCII, which all of them hold, if unknown."""
    if not name:
        return "ascii"
    lowered = name.lower()
    lowered = (aliases or {}).get(lowered, lowered)
    for candidate in (lowered, lowered.replace("win", "cp", 1), lowered.replace("iso_", "iso")):
        try:
            return codecs.lookup(candidate).name
        except LookupError:
            continue
    return "ascii"


def declared_chars(column: Column[Any]) -> int | None:
    """The length a string column declares, in characters (``None``: none declared, or not a string column)."""
    length = getattr(column.type, "length", None)
    return length if isinstance(column.type, String) and length else None
