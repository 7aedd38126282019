"""Text that fits its column: the reason reaper writes into the error column is always accepted.

A column limits its text in characters (``VARCHAR(n)``, ``CHAR(n)``) or in bytes (MySQL's
``TINYTEXT`` holds 255 bytes, ``TEXT`` 65,535), and holds only the characters of its character set
(a MySQL ``latin1`` column, ``utf8mb3`` without characters beyond U+FFFF, a PostgreSQL database in
``LATIN1``). In strict mode MySQL refuses the whole statement otherwise (``Data too long``,
``Incorrect string value``), which would fail every batch of every run. So a character the column
cannot hold becomes ``?`` (as MySQL's non-strict mode writes it), and a text too long is cut,
between characters, and ends with ``...``.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, String, text
from sqlalchemy.engine import Connection

REPLACEMENT = "?"
ELLIPSIS = "..."  # ASCII dots: every character set holds them
# MySQL and MariaDB character sets that Python's codecs spell otherwise; latin1 is in fact cp1252.
MYSQL_CODECS = {
    "latin1": "cp1252", "utf8": "utf-8", "utf8mb3": "utf-8", "utf8mb4": "utf-8", "ucs2": "utf-16-be",
    "utf16": "utf-16-be", "utf16le": "utf-16-le", "utf32": "utf-32-be", "latin5": "iso8859-9",
    "latin7": "iso8859-13", "greek": "iso8859-7", "hebrew": "iso8859-8", "sjis": "shift_jis",
    "ujis": "euc_jp", "eucjpms": "euc_jp", "euckr": "euc_kr", "macroman": "mac-roman", "macce": "mac-latin2",
    "tis620": "tis-620", "koi8r": "koi8-r", "koi8u": "koi8-u",
}
POSTGRESQL_CODECS = {"koi8r": "koi8-r", "koi8u": "koi8-u"}
BMP_ONLY = {"utf8", "utf8mb3", "ucs2"}
TEXT_TYPES = ("tinytext", "text", "mediumtext", "longtext")


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


def _declared(column: Column[Any]) -> int | None:
    length = getattr(column.type, "length", None)
    return length if isinstance(column.type, String) and length else None


def _mysql_fit(conn: Connection, column: Column[Any]) -> TextFit:
    described = conn.execute(
        text(
            "SELECT DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, CHARACTER_OCTET_LENGTH, CHARACTER_SET_NAME "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table "
            "AND COLUMN_NAME = :column"
        ),
        {"table": column.table.name, "column": column.name},
    ).first()
    if described is None or described[3] is None:  # not a text column (or hidden from us): the reflected length
        return TextFit(max_chars=_declared(column))
    data_type, characters, octets, charset = described
    data_type, charset = str(data_type).lower(), str(charset).lower()
    codec = python_codec(charset, MYSQL_CODECS)
    bmp_only = charset in BMP_ONLY
    if data_type in TEXT_TYPES:  # their sizes count bytes
        return TextFit(max_bytes=int(octets), codec=codec, bmp_only=bmp_only)
    return TextFit(max_chars=int(characters) if characters else None, codec=codec, bmp_only=bmp_only)


def _postgresql_fit(conn: Connection, column: Column[Any]) -> TextFit:
    encoding = str(conn.execute(text("SHOW server_encoding")).scalar()).lower()
    # SQL_ASCII stores whatever bytes it is given; the client sends UTF-8.
    codec = "utf-8" if encoding in ("utf8", "sql_ascii") else python_codec(encoding, POSTGRESQL_CODECS)
    return TextFit(max_chars=_declared(column), codec=codec)


def column_fit(conn: Connection, column: Column[Any]) -> TextFit:
    """Return what the text column ``column`` holds, asked of the database where the type does not say."""
    dialect = conn.dialect.name
    if dialect in ("mysql", "mariadb"):
        return _mysql_fit(conn, column)
    if dialect == "postgresql":
        return _postgresql_fit(conn, column)
    return TextFit(max_chars=_declared(column))  # SQLite: any text in any column; the declared length is kept
