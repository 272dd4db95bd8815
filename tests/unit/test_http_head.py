"""The head cap's counting (ridepulse/http_head.py) under every way TCP may cut a connection's
bytes into reads: the protocol is fed the reads directly, its transport a recorder. The real
server's refusal is tested in tests/integration/test_http_services.py; which reads a kernel
hands it there is up to the kernel, so the arrangements are pinned here."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import uvicorn
from uvicorn.server import ServerState

from ridepulse.http_head import MAX_HEAD_BYTES, CappedHeadProtocol

START = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
READ_SIZES = [1, 1000, 16_384, MAX_HEAD_BYTES - 1, MAX_HEAD_BYTES, MAX_HEAD_BYTES + 1, 256_000]


def head_of(size: int) -> bytes:
    """A GET whose head (request line, headers, blank line) is `size` bytes."""
    return START + b"a" * (size - len(START) - 4) + b"\r\n\r\n"


def post_of(body_bytes: int) -> bytes:
    return b"POST /healthz HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (
        body_bytes,
        b"a" * body_bytes,
    )


class Recorder(asyncio.Transport):
    """What the protocol wrote, and whether it closed the connection."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False
        self.protocol: asyncio.BaseProtocol | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol


class Unserved(CappedHeadProtocol):
    """No request is handed to the app: only the counting is under test."""

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        pass


async def app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the app is never called here")


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def connection(loop: asyncio.AbstractEventLoop) -> tuple[CappedHeadProtocol, Recorder]:
    config = uvicorn.Config(app, lifespan="off", log_config=None, log_level="error")
    protocol = Unserved(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    transport = Recorder()
    transport.protocol = protocol
    protocol.connection_made(transport)
    return protocol, transport


def json_error(written: bytes, status: int) -> dict[str, Any]:
    """The answer `written` is: `status`, and a body in the API's JSON error shape."""
    head, _, body = written.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), written[:80]
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    assert headers[b"content-type"] == b"application/json", head
    assert int(headers[b"content-length"]) == len(body), head
    error: dict[str, Any] = orjson.loads(body)
    assert set(error) == {"error", "detail"} and error["detail"], error
    return error


def accepted(loop: asyncio.AbstractEventLoop, stream: bytes, read_size: int) -> int:
    """`stream` in reads of `read_size`: the bytes of the reads before the one that closed the
    connection (all of them if none did)."""
    protocol, transport = connection(loop)
    for start in range(0, len(stream), read_size):
        protocol.data_received(stream[start : start + read_size])
        if transport.closed:
            return start
    return len(stream)


@pytest.mark.parametrize("read_size", READ_SIZES)
def test_a_head_of_the_cap_passes_and_one_byte_more_is_refused_however_it_is_read(
    loop: asyncio.AbstractEventLoop, read_size: int
) -> None:
    assert accepted(loop, head_of(MAX_HEAD_BYTES), read_size) == MAX_HEAD_BYTES
    protocol, transport = connection(loop)
    for start in range(0, MAX_HEAD_BYTES + 1, read_size):
        protocol.data_received(head_of(MAX_HEAD_BYTES + 1)[start : start + read_size])
    assert transport.closed, f"a head of {MAX_HEAD_BYTES + 1} bytes was let through"
    assert json_error(transport.written, 431)["error"] == "request_head_too_large"


@pytest.mark.parametrize("read_size", READ_SIZES)
def test_pipelined_heads_and_bodies_are_each_counted_on_their_own(
    loop: asyncio.AbstractEventLoop, read_size: int
) -> None:
    """Heads of 40 KiB (two of them more than the cap together) around a 1 MiB body."""
    padded = head_of(40 * 1024)
    stream = padded + padded + post_of(1 << 20) + padded
    assert accepted(loop, stream, read_size) == len(stream)


@pytest.mark.parametrize("read_size", READ_SIZES)
def test_a_pipelined_endless_header_is_refused_within_one_read_past_the_cap(
    loop: asyncio.AbstractEventLoop, read_size: int
) -> None:
    """A head that starts inside a read is counted from the next: the documented slack."""
    first = head_of(100)
    endless = first + START + b"a" * (4 * 1024 * 1024)
    fed = accepted(loop, endless, read_size)
    assert fed < len(endless), "an endless pipelined header was never refused"
    assert fed - len(first) <= MAX_HEAD_BYTES + read_size, f"{fed - len(first)} bytes of it"


def timed_connection(
    loop: asyncio.AbstractEventLoop, timeout_s: float
) -> tuple[CappedHeadProtocol, Recorder]:
    """A connection whose head has `timeout_s` to arrive."""
    config = uvicorn.Config(app, lifespan="off", log_config=None, log_level="error")
    timed = type("Timed", (Unserved,), {"head_timeout_s": timeout_s})
    protocol = timed(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    transport = Recorder()
    transport.protocol = protocol
    protocol.connection_made(transport)
    return protocol, transport


@pytest.mark.parametrize("trickle", [0, 1], ids=["silent", "a byte at a time"])
def test_a_head_not_finished_within_its_deadline_is_answered_408_and_closed(
    loop: asyncio.AbstractEventLoop, trickle: int
) -> None:
    """Each byte used to count as life: a client sending one now and then held its connection
    for ever, and one sending nothing on a new connection too."""
    protocol, transport = timed_connection(loop, timeout_s=0.1)
    for byte in START[: trickle * 20]:
        protocol.data_received(bytes([byte]))
        loop.run_until_complete(asyncio.sleep(0.01))
    loop.run_until_complete(asyncio.sleep(0.2))
    assert transport.closed
    assert json_error(transport.written, 408)["error"] == "request_timeout"


def test_a_head_finished_in_time_has_no_deadline_left(loop: asyncio.AbstractEventLoop) -> None:
    protocol, transport = timed_connection(loop, timeout_s=0.1)
    protocol.data_received(head_of(200))  # complete: handed on (to nobody here), not timed
    loop.run_until_complete(asyncio.sleep(0.3))
    assert (transport.closed, transport.written) == (False, b"")


def answer_now(loop: asyncio.AbstractEventLoop, protocol: CappedHeadProtocol) -> None:
    """The app answers the request being read (a 405 from its head alone, say) at once."""
    send = protocol.cycle.send
    loop.run_until_complete(send({"type": "http.response.start", "status": 405, "headers": []}))
    loop.run_until_complete(send({"type": "http.response.body", "body": b""}))


def test_an_answer_before_the_body_closes_once_the_body_is_read_and_serves_no_more(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Not at once (closing on unread bytes resets the connection, and the client still
    sending may lose the answer), and not never (a trickled body held it for ever)."""
    protocol, transport = connection(loop)
    request = post_of(100_000)
    protocol.data_received(request[:1000])
    answer_now(loop, protocol)
    assert transport.written.startswith(b"HTTP/1.1 405 "), transport.written
    assert b"\r\nconnection: close\r\n" in transport.written, transport.written
    assert not transport.closed, "closed with the body unread"
    answered = protocol.cycle
    protocol.data_received(request[1000:] + head_of(200))  # the body, and a pipelined GET
    assert transport.closed, "kept open once the body was read"
    assert protocol.cycle is answered, "the GET pipelined after it was handed on"


@pytest.mark.parametrize("read_size", [1000, len(post_of(100))])
def test_a_body_read_before_the_answer_keeps_the_connection(
    loop: asyncio.AbstractEventLoop, read_size: int
) -> None:
    """In one read with its head or in several, a body read whole leaves keep-alive as it was."""
    protocol, transport = connection(loop)
    request = post_of(5000)
    for start in range(0, len(request), read_size):
        protocol.data_received(request[start : start + read_size])
    answer_now(loop, protocol)
    assert b"connection: close" not in transport.written, transport.written
    assert not transport.closed


def test_a_body_not_finished_within_its_deadline_is_answered_408_and_closed(
    loop: asyncio.AbstractEventLoop,
) -> None:
    protocol, transport = timed_connection(loop, timeout_s=0.1)
    request = post_of(100_000)
    for start in range(0, 2000, 100):  # the head, then the body a little at a time
        protocol.data_received(request[start : start + 100])
        loop.run_until_complete(asyncio.sleep(0.01))
    loop.run_until_complete(asyncio.sleep(0.2))
    assert transport.closed
    assert json_error(transport.written, 408)["error"] == "request_timeout"


@pytest.mark.parametrize(
    "stream",
    [b"HELLO WORLD\r\n\r\n", b"GET / HTTP/1.1\r\nX-Bad: a\x01b\r\n\r\n"],
    ids=["no request line", "a control byte in a header"],
)
def test_what_the_parser_refuses_is_a_json_400_and_closed(
    loop: asyncio.AbstractEventLoop, stream: bytes
) -> None:
    """uvicorn answered these `400 text/plain` "Invalid HTTP request received."."""
    protocol, transport = connection(loop)
    protocol.data_received(stream)
    assert transport.closed
    assert json_error(transport.written, 400)["error"] == "malformed_request"


class Started(Unserved):
    """Records each cycle handed to the app (which runs nothing): the test answers for it."""

    started: list[Any]

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        self.started.append(cycle)


def answer(loop: asyncio.AbstractEventLoop, cycle: Any, *, more_body: bool = False) -> None:
    send = cycle.send
    loop.run_until_complete(send({"type": "http.response.start", "status": 200, "headers": []}))
    body = {"type": "http.response.body", "body": b"{}", "more_body": more_body}
    loop.run_until_complete(send(body))


@pytest.mark.parametrize("streaming", [False, True], ids=["handler running", "streaming"])
def test_a_pipelined_request_received_whole_is_not_timed_while_it_is_answered(
    loop: asyncio.AbstractEventLoop, streaming: bool
) -> None:
    """The deadline is the client's, to send a request: the end of the first answer started
    it for the second, already received and in its handler, and a handler (or a stream)
    slower than the deadline had its connection closed with no answer."""
    config = uvicorn.Config(app, lifespan="off", log_config=None, log_level="error")
    timed = type("Timed", (Started,), {"head_timeout_s": 0.1, "started": []})
    protocol = timed(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    transport = Recorder()
    transport.protocol = protocol
    protocol.connection_made(transport)
    protocol.data_received(head_of(200) + head_of(200))  # two GETs pipelined in one read
    first = protocol.started[0]
    answer(loop, first)
    assert len(protocol.started) == 2, "the pipelined GET was not handed on"
    second = protocol.started[1]
    if streaming:
        answer(loop, second, more_body=True)
    loop.run_until_complete(asyncio.sleep(0.3))
    assert not transport.closed, "closed while the pipelined request was being answered"
    if streaming:
        loop.run_until_complete(second.send({"type": "http.response.body", "body": b""}))
    else:
        answer(loop, second)
    assert transport.written.count(b"HTTP/1.1 200 ") == 2, transport.written
    loop.run_until_complete(asyncio.sleep(0.3))
    assert transport.closed, "no deadline for the next request once both were answered"
