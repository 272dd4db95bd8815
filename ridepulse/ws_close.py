"""A WebSocket close reason fits in 123 bytes of UTF-8 (RFC 6455 §5.5: a control frame carries at
most 125 bytes, two of them the code). A longer reason makes the server's protocol layer fail
(`ProtocolError: control frame too long`) and the socket dies with no close frame at all, so a
reason that may carry a client's text (a market id, a driver id) goes through `close_reason`."""

from __future__ import annotations

MAX_CLOSE_REASON_BYTES = 123


def close_reason(text: str) -> str:
    """`text`, cut to fit a close frame: by bytes, never inside a character (`[:120]` counted
    characters, and 80 `é` are 160 bytes)."""
    encoded = text.encode()
    if len(encoded) <= MAX_CLOSE_REASON_BYTES:
        return text
    # a cut inside a multi-byte character leaves an incomplete sequence at the end only
    return encoded[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
