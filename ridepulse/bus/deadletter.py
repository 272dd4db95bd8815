"""The dead-letter stream: poison and invalid entries go here with their reason, then are acked.

A dead letter keeps the original entry byte for byte, so a replay appends exactly what arrived,
even field names or values that are not UTF-8 or data that is not JSON."""

from __future__ import annotations

from collections.abc import Mapping
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
# Each original field is also kept as a field of its own, its name behind this prefix: a stream
# stores bytes, so these are the entry verbatim with no encoding to get wrong, in its field order.
# `original` above is only a readable rendering (bytes that are not UTF-8 shown as U+FFFD), kept
# for people and for readers of the documented contract.
ORIGINAL_FIELD_PREFIX = b"original:"


def envelope_attribute(fields: Mapping[bytes, bytes] | None, name: str) -> str:
    """An envelope attribute (`id`, `type`) of a raw entry as text, empty if absent: what a dead
    letter stores and its log line shows, even for an entry that failed validation."""
    return (fields or {}).get(name.encode(), b"").decode(errors="replace")


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
        b"event_id": envelope_attribute(fields, "id").encode(),
        b"type": envelope_attribute(fields, "type").encode(),
        b"reason": reason.encode(),
        b"deliveries": str(deliveries).encode(),
        b"time": str(now_ms()).encode(),
        b"original": orjson.dumps(original),
        **{ORIGINAL_FIELD_PREFIX + k: v for k, v in (fields or {}).items()},
    }


def verbatim_original(dead_letter: Mapping[bytes, bytes]) -> dict[bytes, bytes]:
    """The original entry's fields byte for byte, from a dead letter's fields; empty for a letter
    written before they were kept (it has only the readable `original`)."""
    cut = len(ORIGINAL_FIELD_PREFIX)
    return {k[cut:]: v for k, v in dead_letter.items() if k.startswith(ORIGINAL_FIELD_PREFIX)}
