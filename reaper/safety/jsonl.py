"""The jsonl archive file: gzip members, one per batch, each naming its rows' ids in its header.

A file is a series of gzip members (RFC 1952), which ``zcat`` reads as one text of JSON lines. Each
member's header carries a comment, ``reaper ids [...]``, listing the ids of the rows it holds,
written before its compressed rows. A member the file ends inside (a run killed while writing it,
or a file cut short) still tells which rows it held, so a restore can ask the table whether they
were deleted: a batch whose rows are all still there was never committed.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from reaper.errors import ConfigError

READ_CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b\x08"  # and deflate, the only method
FEXTRA, FNAME, FCOMMENT = 4, 8, 16
IDS_COMMENT = b"reaper ids "


class DamagedArchive(ConfigError):
    """An archive file that cannot be read whole: nothing is restored from it."""


def gzip_member(data: bytes, ids: list[Any]) -> bytes:
    """One gzip member holding ``data``, its header commented with ``ids`` (ASCII JSON: no NUL, Latin-1)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)  # raw deflate: the header is ours
    body = compressor.compress(data) + compressor.flush()
    comment = IDS_COMMENT + json.dumps(ids, separators=(",", ":")).encode("ascii")
    # flags, mtime 0, extra flags 2 (slowest, best compression), OS 255 (unknown)
    header = GZIP_MAGIC + bytes([FCOMMENT]) + struct.pack("<I", 0) + b"\x02\xff" + comment + b"\x00"
    return header + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def header_ids(data: bytes) -> list[Any] | None:
    """The ids a member's header names, from the member's first bytes; ``None`` when they cannot be read
    (a header cut short, or a member written before reaper named them)."""
    if len(data) < 10 or not data.startswith(GZIP_MAGIC):
        return None
    flags, position = data[3], 10
    if flags & FEXTRA:
        position += 2 + int.from_bytes(data[10:12], "little")
    if flags & FNAME:
        position = data.find(b"\x00", position) + 1
    end = data.find(b"\x00", position)
    if not flags & FCOMMENT or position == 0 or end < 0 or not data.startswith(IDS_COMMENT, position):
        return None
    try:
        ids = json.loads(data[position + len(IDS_COMMENT) : end])
    except ValueError:
        return None
    return ids if isinstance(ids, list) else None


@dataclass(frozen=True)
class Member:
    """One gzip member of an archive file: one batch's rows, one JSON line each."""

    number: int  # from 1, in the file's order
    lines: list[bytes]  # its complete lines, without their newlines
    complete: bool  # False: the file ends inside it (a run killed while writing it, or a file cut short)
    ids: list[Any] | None = None  # of a member cut short: the ids its header names, when it could be read


def archive_members(path: Path) -> Iterator[Member]:
    """Yield the members of an archive file in order; raise ``DamagedArchive`` at the first that is damaged.

    Only the last member can be cut short: the file ends inside it. Read in chunks, so that a
    member's end is found without copying the rest of the file.
    """
    with open(path, "rb") as handle:
        pending, number, position = b"", 0, 0
        while True:
            pending = pending or handle.read(READ_CHUNK)
            if not pending:
                if number == 0:
                    raise DamagedArchive(f"archive file {str(path)!r} is empty")
                return
            number += 1
            text, pending, complete, consumed = _one_member(handle, pending, path, number, position)
            lines = [line for line in text.split(b"\n") if line.strip()]
            if complete:
                yield Member(number, lines, complete)
                position += consumed
                continue
            handle.seek(position)
            # the text after the last newline is the start of a line the file does not finish
            yield Member(number, lines if text.endswith(b"\n") else lines[:-1], False, header_ids(handle.read()))
            return


def _one_member(
    handle: BinaryIO, data: bytes, path: Path, number: int, position: int
) -> tuple[bytes, bytes, bool, int]:
    """Decompress one member starting with ``data``; return its text, the bytes after it, whether it
    ended before the file did, and the bytes it took."""
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    parts, consumed, gzip_file = [], 0, number > 1 or data.startswith(GZIP_MAGIC[:2])
    while True:
        try:
            parts.append(decompressor.decompress(data))
        except zlib.error as exc:
            if not gzip_file:
                raise DamagedArchive(f"archive file {str(path)!r} is not a gzip file ({exc})") from None
            raise DamagedArchive(
                f"archive file {str(path)!r} is damaged in member {number} (from byte {position}): {exc}; "
                "nothing restored"
            ) from None
        if decompressor.eof:
            rest = decompressor.unused_data
            return b"".join(parts), rest, True, consumed + len(data) - len(rest)
        consumed += len(data)
        data = handle.read(READ_CHUNK)
        if not data:
            return b"".join(parts), b"", False, consumed


def read_jsonl_archive(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the rows of an archive file, member by member; a member cut short at its end is skipped."""
    for member in archive_members(path):
        if member.complete:
            yield from (json.loads(line) for line in member.lines)
