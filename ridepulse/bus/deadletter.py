"""The dead-letter stream: poison and invalid entries go here with their reason, then are acked."""

from __future__ import annotations

from typing import Any

import orjson

from ridepulse.contracts.envelope import now_ms

DEAD_LETTER_MAXLEN = 100_000
# The fields of every dead-letter entry, in the order dead_letter_fields writes them.
DEAD_LETTER_FIELDS = (
    "stream",
    "group",
    "consumer",
    "entry_id",
    "event_id",
    "type",
    "reason",
    "deliveries",
    "time",
    "original",
)  # dead letters are for inspection, not an archive


def dead_letter_fields(
    *,
    stream: str,
    group: str,
    consumer: str,
    entry_id: str,
    fields: dict[bytes, bytes] | None,
    reason: str,
    deliveries: int,
) -> dict[bytes, bytes]:
    """The dead-letter entry: where it came from, why, and the original fields verbatim."""
    original: dict[str, Any] = {
        k.decode(errors="replace"): v.decode(errors="replace") for k, v in (fields or {}).items()
    }
    return {
        b"stream": stream.encode(),
        b"group": group.encode(),
        b"consumer": consumer.encode(),
        b"entry_id": entry_id.encode(),
        b"event_id": original.get("id", "").encode(),
        b"type": original.get("type", "").encode(),
        b"reason": reason.encode(),
        b"deliveries": str(deliveries).encode(),
        b"time": str(now_ms()).encode(),
        b"original": orjson.dumps(original),
    }
