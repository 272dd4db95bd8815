"""uvicorn's httptools protocol with a cap on a request's head (request line and headers): past
`MAX_HEAD_BYTES` without the blank line that ends it, the request is answered 431 and the
connection closed (docs/security.md, "Request heads and bodies").

httptools sets no limit of its own: it appends each read to the header value it is building, so
a header that never ends cost time quadratic in its length (150 MiB kept a core busy for 32 s,
the event loop with it) and memory the process kept. The cap is exact for a head that starts a
read, which is every request a client sends after the previous answer; a pipelined head that
starts inside a read is counted from the next read on, so it may pass the cap by at most one
read (uvloop's are at most 250 KB).

A request also has a deadline (`RIDEPULSE_HTTP_HEAD_TIMEOUT_S`): from the connection's start,
and from the end of each response, the client has that long to finish its next request, head
and body, however slowly its bytes trickle in (a pipelined request read whole before the
answer ahead of it ended is not timed while it is answered: its handler, or its stream, may
take longer); past it the connection is answered 408 (or, if
the request was answered already, just closed). uvicorn's keep-alive timer is no such deadline:
every byte cancels it, so a client sending a byte a minute held its connection, and a file
descriptor, for ever: in a head (or sending nothing on a new connection) until 2026-12-07, in
a body the app had answered without reading (a 401, a 413, a 503) until the same day.

An answer sent while its request's body is still unread says `connection: close`, and the
connection closes once the rest of the body has been read (and dropped), or at the deadline:
closing on unread bytes resets the connection (TCP RST), and a client still sending its body
could then lose the answer. (uvicorn kept such a connection alive, reading the body for ever.)

These answers, and the 400 for a request the parser refuses, are in the JSON error shape of every
other answer (ridepulse.http_errors), not uvicorn's plain text."""

from __future__ import annotations

from asyncio import Transport
from weakref import WeakSet

from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from ridepulse.errors import http_error_code
from ridepulse.http_errors import error_body

# Our clients' heads are under 2 KiB (a JWT or the dashboard cookie, an Idempotency-Key, a
# WebSocket handshake, a proxy's X-Forwarded-*). nginx refuses a header line past 8 KiB and
# Node a head past 16 KiB, as uvicorn's h11 backend does: 64 KiB is four times the strictest,
# so a proxy in front refuses first, and parsing that much costs well under a millisecond.
MAX_HEAD_BYTES = 64 * 1024
TOO_LARGE = 431
REFUSAL = f"request head (request line and headers) larger than {MAX_HEAD_BYTES} bytes"
TIMED_OUT = 408
TIMEOUT_ANSWER = "request (head and body) not received in time"
MALFORMED = 400
MALFORMED_ANSWER = "not a valid HTTP/1.1 request"

_connection_made = HttpToolsProtocol.connection_made
_data_received = HttpToolsProtocol.data_received
_on_headers_complete = HttpToolsProtocol.on_headers_complete
_on_message_complete = HttpToolsProtocol.on_message_complete
_on_response_complete = HttpToolsProtocol.on_response_complete
_swept: WeakSet[ServerState] = WeakSet()  # servers whose open requests a sweep is watching


class CappedHeadProtocol(HttpToolsProtocol):
    """A connection counts the bytes of the head it is reading and refuses one past the cap.

    A head is open from the connection's start and from the end of each message until the
    parser completes the next head; the bytes of a body are never counted. The parent's methods
    are called directly, not through super(): the cap then costs 0.4 µs per request instead of
    0.8 (measured on the parent's own 4.7 µs; a single ping takes ~120 µs, docs/benchmarks.md)."""

    # per connection, like the parent's state: set on the instance as its reads come
    _head_open = True
    _head_bytes = 0
    _request_since: float | None = None  # loop time the clock of the request owed started
    _keep_alive: bool | None = None  # the cycle's own, set aside while its body is unread
    _close_when_read = False  # answered before its body was read: close once it is
    head_timeout_s = 30.0  # a class per setting: with_head_timeout

    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        _connection_made(self, transport)
        self._request_since = self.loop.time()
        _watch_requests(self)

    def on_response_complete(self) -> None:
        _on_response_complete(self)
        if self._request_since is None and not self._answering(self.cycle):
            self._request_since = self.loop.time()  # the next request's clock; an unread
            # body's runs on

    @staticmethod
    def _answering(cycle: RequestResponseCycle | None) -> bool:
        """The cycle's request is all in and its answer still on its way (a pipelined request
        now in its handler, or streaming): the clock is the client's, for requests it sends."""
        return cycle is not None and not cycle.more_body and not cycle.response_complete

    def data_received(self, data: bytes) -> None:
        if self._head_open:
            if len(data) > MAX_HEAD_BYTES - self._head_bytes:
                self._feed_up_to_the_cap(data)
                return
            self._head_bytes += len(data)
        _data_received(self, data)
        if not self._head_open and self._keep_alive is None:
            self._answer_closes_until_body_read()

    def on_headers_complete(self) -> None:
        self._head_open = False
        if self._close_when_read:
            return  # a request pipelined after an early answer: the connection is closing
        _on_headers_complete(self)

    def on_message_complete(self) -> None:
        self._head_open = True
        self._head_bytes = 0
        _on_message_complete(self)
        cycle = self.cycle
        if cycle is None:
            return  # a WebSocket handshake, the connection's first request
        if self._close_when_read:
            self.transport.close()  # answered early, with `connection: close`: all read now
        elif self._keep_alive is not None and not cycle.response_started:
            cycle.keep_alive, cycle.transport = self._keep_alive, self.transport  # as it was
            self._keep_alive = None
        self._request_since = self.loop.time() if cycle.response_complete else None

    def _answer_closes_until_body_read(self) -> None:
        """This read ended inside a body, before any answer (the app runs after the read): an
        answer sent before the body ends closes the connection once the body is read."""
        cycle = self.cycle
        if cycle is None or cycle.response_started or self.transport.is_closing():
            return
        if self.transport.get_protocol() is not self:
            return  # a WebSocket now
        self._keep_alive, cycle.keep_alive = cycle.keep_alive, False  # `connection: close`
        cycle.transport = _CloseOnceRead(self)  # type: ignore[assignment]

    def _close_once_read(self) -> None:
        if self._head_open:
            self.transport.close()  # the body is in: nothing unread to reset the connection
        else:
            self._close_when_read = True  # on_message_complete, or the deadline, closes

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

    def _timed_out(self) -> None:
        """408 for a request not received in time: its head (after the last answer), or the
        body its app waits for. Never mid-answer: a body answered already (without being read),
        or a head behind a pipelined request's answer, just closes."""
        self._request_since = None
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return  # gone, or a WebSocket now
        cycle = self.cycle
        if cycle is None or (
            cycle.response_complete if self._head_open else not cycle.response_started
        ):
            if cycle is not None and not self._head_open:
                cycle.disconnected = True  # the app waiting for the body answers nothing now
            answer = (TIMED_OUT, TIMEOUT_ANSWER)
            self.transport.write(_answer(*answer, self.server_state.default_headers))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """What the parser refuses (no request line, a control byte in a header) is answered
        in the JSON error shape too, not uvicorn's plain text (`msg`, uvicorn's, says no more)."""
        if self.cycle is None or self.cycle.response_complete:  # as _refuse: never mid-answer
            answer = (MALFORMED, MALFORMED_ANSWER)
            self.transport.write(_answer(*answer, self.server_state.default_headers))
        self.transport.close()

    def _refuse(self) -> None:
        self.logger.warning("Request head past %d bytes refused.", MAX_HEAD_BYTES)
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_answer(TOO_LARGE, REFUSAL, self.server_state.default_headers))
        # else a response to an earlier pipelined request is on its way: nothing can follow it
        self.transport.close()


class _CloseOnceRead:
    """The transport as a request's cycle sees it while the request's body is unread: the
    cycle's close (after its `connection: close` answer) waits until the body has been read."""

    __slots__ = ("_connection",)

    def __init__(self, connection: CappedHeadProtocol) -> None:
        self._connection = connection

    def write(self, data: bytes) -> None:
        self._connection.transport.write(data)

    def is_closing(self) -> bool:
        return self._connection.transport.is_closing()

    def close(self) -> None:
        self._connection._close_once_read()


def _watch_requests(connection: CappedHeadProtocol) -> None:
    """One sweep per server over its open connections, not a timer per request: arming and
    cancelling a timer on every request cost 3-5 µs (a ping takes ~120), reading the loop's
    clock well under one. A request is timed out at most half its timeout (and 1 s) late."""
    state = connection.server_state
    if state in _swept:
        return
    _swept.add(state)
    every_s = min(1.0, connection.head_timeout_s / 2)

    def sweep() -> None:
        now = connection.loop.time()
        for other in list(state.connections):
            if not isinstance(other, CappedHeadProtocol) or other._request_since is None:
                continue
            if now - other._request_since > other.head_timeout_s:
                other._timed_out()
        if state.connections:
            connection.loop.call_later(every_s, sweep)
        else:
            _swept.discard(state)  # the next connection starts it again

    connection.loop.call_later(every_s, sweep)


def with_head_timeout(timeout_s: float) -> type[CappedHeadProtocol]:
    """The protocol class uvicorn instantiates per connection, with this deadline for a request."""
    return type("CappedHeadProtocol", (CappedHeadProtocol,), {"head_timeout_s": timeout_s})


def _answer(status: int, detail: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """An answer in the JSON error shape of every other (ridepulse.http_errors), written
    before any app sees the request; the connection closes after it."""
    body = error_body(http_error_code(status), detail)
    lines = [STATUS_LINE[status]]
    lines += [name + b": " + value + b"\r\n" for name, value in default_headers]
    lines += [
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n\r\n",
        body,
    ]
    return b"".join(lines)
