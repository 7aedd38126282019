"""Failures a Celery client can read: the exception a zombie's result column gets, serialized as
Celery's result backends serialize a task's exception.

With the JSON serializer (Celery's default) that is ``{"exc_type": ..., "exc_message": [...],
"exc_module": ...}``; with pickle, the pickled exception. ``AsyncResult.get()`` then raises it. The
class is one every Celery client has loaded, so no client needs reaper installed: a running task's
worker is gone (``WorkerLostError``, what Celery itself raises when a worker dies under a task), any
other row waited too long (``TimeoutError``). The message is reaper's reason, which names reaper.

Celery's SQLAlchemy backend keeps the bytes in a binary column; django-celery-results keeps text,
binary payloads (pickle) base64-encoded, with the content type and encoding in columns of their own.
Nothing here imports Celery.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, LargeBinary, String

RUNNING_EXCEPTION = ("billiard.exceptions", "WorkerLostError")
OTHER_EXCEPTION = ("builtins", "TimeoutError")
# What kombu's serializers say of their payloads: (content type, content encoding).
CONTENT = {"json": ("application/json", "utf-8"), "pickle": ("application/x-python-serialize", "binary")}


def exception_for(status_role: str) -> tuple[str, str]:
    """Return the (module, class name) of the exception written for a row of ``status_role``."""
    return RUNNING_EXCEPTION if status_role == "running" else OTHER_EXCEPTION


def _pickled(module: str, name: str, message: str) -> bytes:
    """Return the pickle of ``module.name(message)``, built from opcodes: reaper has no such class to pickle.

    Protocol 2, as an exception pickles itself: the class (GLOBAL), its arguments (one string, a
    tuple), REDUCE. Every pickle Celery writes starts with the protocol marker, ``\\x80``.
    """
    text = message.encode("utf-8")
    return b"".join(
        (
            b"\x80\x02",  # PROTO 2
            b"c" + f"{module}\n{name}\n".encode("ascii"),  # GLOBAL
            b"X" + struct.pack("<I", len(text)) + text,  # BINUNICODE
            b"\x85",  # TUPLE1
            b"R",  # REDUCE
            b".",  # STOP
        )
    )


def serialize_exception(serializer: str, status_role: str, message: str) -> bytes:
    """Return the exception for a row of ``status_role`` failed with ``message``, as ``serializer`` writes it."""
    module, name = exception_for(status_role)
    if serializer == "pickle":
        return _pickled(module, name, message)
    document = {"exc_type": name, "exc_message": [message], "exc_module": module}
    return json.dumps(document).encode("utf-8")


@dataclass(frozen=True)
class CeleryFailure:
    """Where and how a failure stores its exception: the result column, the serializer, and the
    content-type and content-encoding columns when the table has them."""

    result: Column[Any]
    serializer: str
    content_type: Column[Any] | None = None
    content_encoding: Column[Any] | None = None

    def stored(self, status_role: str, message: str) -> bytes | str:
        """Return the value of the result column for one failed row."""
        payload = serialize_exception(self.serializer, status_role, message)
        if isinstance(self.result.type, LargeBinary):
            return payload
        if CONTENT[self.serializer][1] == "binary":
            return base64.b64encode(payload).decode("ascii")
        return payload.decode("utf-8")

    def constants(self) -> dict[Column[Any], str]:
        """Return the columns every failed row gets the same value in: its content type and encoding."""
        content_type, encoding = CONTENT[self.serializer]
        values: dict[Column[Any], str] = {}
        if self.content_type is not None:
            values[self.content_type] = content_type
        if self.content_encoding is not None:
            values[self.content_encoding] = encoding
        return values


def result_column_fits(column: Column[Any]) -> bool:
    """Whether ``column`` can hold a serialized exception: a binary or a text column."""
    return isinstance(column.type, LargeBinary | String)
