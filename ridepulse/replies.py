"""Redis replies as Python values, for the readers of raw (bytes) replies."""

from __future__ import annotations

from typing import Any


def text(value: object) -> str:
    """A reply as str. A byte that is not UTF-8 is replaced (U+FFFD), not raised on: one stray
    byte written into a stream or hash must not stop the reader that meets it."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def time_ms(reply: Any) -> int:
    """TIME's reply, (seconds, microseconds), in milliseconds. A cluster client asks every
    primary and answers a dict of their replies: any one will do."""
    if isinstance(reply, dict):
        reply = next(iter(reply.values()))
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000
