"""uvicorn's httptools protocol with a cap on a request's head (request line and headers): past
`MAX_HEAD_BYTES` without the blank line that ends it, the request is answered 431 and the
connection closed (docs/security.md, "Request heads").

httptools sets no limit of its own: it appends each read to the header value it is building, so
a header that never ends cost time quadratic in its length (150 MiB kept a core busy for 32 s,
the event loop with it) and memory the process kept. The cap is exact for a head that starts a
read, which is every request a client sends after the previous answer; a pipelined head that
starts inside a read is counted from the next read on, so it may pass the cap by at most one
read (uvloop's are at most 250 KB)."""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

# Our clients' heads are under 2 KiB (a JWT or the dashboard cookie, an Idempotency-Key, a
# WebSocket handshake, a proxy's X-Forwarded-*). nginx refuses a header line past 8 KiB and
# Node a head past 16 KiB, as uvicorn's h11 backend does: 64 KiB is four times the strictest,
# so a proxy in front refuses first, and parsing that much costs well under a millisecond.
MAX_HEAD_BYTES = 64 * 1024
TOO_LARGE = 431
REFUSAL = b"Request header fields too large."

_data_received = HttpToolsProtocol.data_received
_on_headers_complete = HttpToolsProtocol.on_headers_complete
_on_message_complete = HttpToolsProtocol.on_message_complete


class CappedHeadProtocol(HttpToolsProtocol):
    """A connection counts the bytes of the head it is reading and refuses one past the cap.

    A head is open from the connection's start and from the end of each message until the
    parser completes the next head; the bytes of a body are never counted. The parent's methods
    are called directly, not through super(): the cap then costs 0.4 µs per request instead of
    0.8 (measured on the parent's own 4.7 µs; a single ping takes ~120 µs, docs/benchmarks.md)."""

    # per connection, like the parent's state: set on the instance as its reads come
    _head_open = True
    _head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._head_open:
            if len(data) > MAX_HEAD_BYTES - self._head_bytes:
                self._feed_up_to_the_cap(data)
                return
            self._head_bytes += len(data)
        _data_received(self, data)

    def on_headers_complete(self) -> None:
        self._head_open = False
        _on_headers_complete(self)

    def on_message_complete(self) -> None:
        self._head_open = True
        self._head_bytes = 0
        _on_message_complete(self)

    def _feed_up_to_the_cap(self, data: bytes) -> None:
        """The parser sees this read only up to the cap; the head must have ended by then."""
        room = MAX_HEAD_BYTES - self._head_bytes
        self._head_bytes = MAX_HEAD_BYTES  # reset by the end of a message within `room`
        if room > 0:
            _data_received(self, data[:room])
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return  # refused by the parser (400), or a WebSocket now (its client awaits the 101)
        if self._head_open and self._head_bytes == MAX_HEAD_BYTES:
            self._refuse()  # the same head, still open at the cap
        else:
            self.data_received(data[room:])  # a body, or the next pipelined request

    def _refuse(self) -> None:
        self.logger.warning("Request head past %d bytes refused.", MAX_HEAD_BYTES)
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_refusal(self.server_state.default_headers))
        # else a response to an earlier pipelined request is on its way: nothing can follow it
        self.transport.close()


def _refusal(default_headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [STATUS_LINE[TOO_LARGE]]
    lines += [name + b": " + value + b"\r\n" for name, value in default_headers]
    lines += [
        b"content-type: text/plain; charset=utf-8\r\n",
        b"content-length: %d\r\n" % len(REFUSAL),
        b"connection: close\r\n\r\n",
        REFUSAL,
    ]
    return b"".join(lines)
