"""The two HTTP services as `ridepulse run` starts them (ridepulse/http_server.py), each a real
process on loopback against the session's embedded Valkey: a request head is capped at
MAX_HEAD_BYTES (431 past it, the connection closed, other clients served all along; before,
a header that never ended kept a core and the event loop busy) and has a deadline; a WebSocket
peer that answers no ping is closed and its place under the per-token cap freed; and SIGTERM
ends the process with status 0 and `service.stopped` (ingest died by the signal, status -15,
without a word)."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx
import orjson
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect as ws_connect

from ingest.shedding import MAX_RETRY_AFTER_S
from loadtests.platform import clean_env
from ridepulse.auth import mint_dashboard_link, mint_token
from ridepulse.http_head import MAX_HEAD_BYTES
from ridepulse.redis_server import EmbeddedRedis, free_port
from ridepulse.settings import Settings
from tests.support.processes import run_service
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.integration

SERVICES = ("ingest", "dashboard")
PORT_SETTING = {"ingest": "RIDEPULSE_API_PORT", "dashboard": "RIDEPULSE_DASHBOARD_PORT"}
ENDLESS_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
CHUNK = b"a" * 16_384
# Far past the cap: a server still reading this much of one head has no cap. (Before the cap,
# 50 MiB of it cost ingest 1.3 s of CPU and 150 MiB 32 s; 8 MiB fails the test in seconds.)
GIVE_UP_AFTER_BYTES = 8 * 1024 * 1024
ANSWER_WITHIN_S = 5.0
# what a driver socket answers a ping Redis did not store (README: the socket stays open)
UNAVAILABLE_FRAME = {
    "type": "error",
    "error": "unavailable",
    "detail": "storage is unavailable; retry shortly",
    "retry_after_s": 1,
}
SECRET = "test-secret-not-for-production-0123456789"


@dataclass
class Served:
    service: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def healthz(self) -> int:
        """A normal client's request, with a deadline: a blocked event loop fails it."""
        url = f"http://127.0.0.1:{self.port}/healthz"
        return httpx.get(url, timeout=ANSWER_WITHIN_S).status_code

    def events(self) -> list[str]:
        lines = self.log_path.read_bytes().splitlines()
        return [orjson.loads(line).get("event") for line in lines if line.startswith(b"{")]


@contextlib.contextmanager
def _running(service: str, redis_url: str, data_dir: Path, **settings: str) -> Iterator[Served]:
    """`ridepulse run <service>` on a free loopback port, answering /healthz."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"{service}.log"
    env = clean_env(
        RIDEPULSE_REDIS_URL=redis_url,
        RIDEPULSE_KEY_PREFIX=f"t{port}",
        RIDEPULSE_DATA_DIR=str(data_dir),
        RIDEPULSE_SECRET=SECRET,
        RIDEPULSE_HOST="127.0.0.1",
        RIDEPULSE_LOG_FORMAT="json",
        RIDEPULSE_LOG_LEVEL="info",
        **{PORT_SETTING[service]: str(port)},
        **settings,
    )
    process = run_service(service, env, log_path)
    served = Served(service, port, process, log_path)

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{service} exited {process.returncode}: {served.output()}")
        with contextlib.suppress(httpx.HTTPError):
            return served.healthz() == 200
        return False

    try:
        wait_until_sync(answers, timeout_s=30, interval_s=0.1, what=f"{service}'s /healthz")
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.fixture(scope="module", params=SERVICES)
def served(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One process per service for the head tests (they leave it running as they found it)."""
    with _running(request.param, redis_url, tmp_path_factory.mktemp(request.param)) as running:
        yield running


def _status_of(head: bytes, port: int) -> int | str:
    """The status a fresh connection gets for `head`, sent whole."""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN_S) as sock:
        return _statuses(sock, [head], pipelined=False)[0]


def _answer_to(request: bytes, port: int) -> bytes:
    """The answer a fresh connection gets for `request`."""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN_S) as sock:
        _send(sock, request)
        return _whole_answer(sock, b"")


def _whole_answer(sock: socket.socket, start: bytes) -> bytes:
    """`start` and what follows it up to the end of the answer's Content-Length bytes of body
    (less if the server closes first)."""
    answer, deadline = start, time.monotonic() + ANSWER_WITHIN_S
    while True:
        head, ended, body = answer.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)\r\ncontent-length: (\d+)", head)
        if ended and length is not None and len(body) >= int(length.group(1)):
            return answer
        chunk = _read_some(sock, deadline)
        if not chunk:
            return answer
        answer += chunk


def _json_error(answer: bytes, status: int) -> dict[str, str]:
    """README: every error is JSON {"error", "detail", "field"?}, not uvicorn's plain text."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), answer[:200]
    assert b"\r\ncontent-type: application/json\r\n" in head.lower(), head
    error: dict[str, str] = orjson.loads(body)
    assert {"error", "detail"} <= set(error) <= {"error", "detail", "field"}, error
    return error


def _head_of(size: int) -> bytes:
    """A GET /healthz whose head (request line, headers, blank line) is `size` bytes."""
    bare = ENDLESS_HEAD + b"\r\n\r\n"
    return ENDLESS_HEAD + b"a" * (size - len(bare)) + b"\r\n\r\n"


def test_a_head_of_exactly_the_cap_is_served_and_one_byte_more_is_refused_with_431(
    served: Served,
) -> None:
    """docs/security.md, "Request heads and bodies": up to 64 KiB of request line and headers."""
    assert MAX_HEAD_BYTES == 64 * 1024
    assert len(_head_of(MAX_HEAD_BYTES)) == MAX_HEAD_BYTES
    assert _status_of(_head_of(MAX_HEAD_BYTES), served.port) == 200, served.output()
    assert _status_of(_head_of(MAX_HEAD_BYTES + 1), served.port) == 431, served.output()
    refusal = _json_error(_answer_to(_head_of(MAX_HEAD_BYTES + 1), served.port), 431)
    assert refusal["error"] == "request_head_too_large", refusal


@pytest.mark.parametrize(
    "request_bytes",
    [b"HELLO WORLD\r\n\r\n", b"GET /healthz HTTP/1.1\r\nX-Bad: a\x01b\r\n\r\n"],
    ids=["no request line", "a control byte in a header"],
)
def test_a_request_the_parser_refuses_is_a_json_400(served: Served, request_bytes: bytes) -> None:
    """uvicorn's own answer was `400 text/plain` "Invalid HTTP request received."."""
    refusal = _json_error(_answer_to(request_bytes, served.port), 400)
    assert refusal["error"] == "malformed_request", refusal
    assert served.healthz() == 200, served.output()


# a route of each service that needs a token, and what /healthz allows
PROTECTED = {"ingest": "/v1/rides/sf-x", "dashboard": "/api/snapshot"}
HEALTHZ_ALLOWS = {"ingest": {"GET"}, "dashboard": {"GET", "HEAD"}}


def test_a_401_names_the_bearer_scheme_and_a_405_the_methods_allowed(served: Served) -> None:
    """RFC 9110 §15.5.2 and §15.5.6: both headers were dropped (the JSON error handlers
    ignored the router's Allow, and no 401 carried a WWW-Authenticate)."""
    base = f"http://127.0.0.1:{served.port}"
    unauthorized = httpx.get(base + PROTECTED[served.service], timeout=ANSWER_WITHIN_S)
    assert unauthorized.status_code == 401, unauthorized.text
    assert unauthorized.headers.get("www-authenticate") == "Bearer", unauthorized.headers
    assert unauthorized.json()["error"] == "unauthorized"
    not_allowed = httpx.post(base + "/healthz", timeout=ANSWER_WITHIN_S)
    assert not_allowed.status_code == 405, not_allowed.text
    allowed = {m.strip() for m in not_allowed.headers.get("allow", "").split(",") if m.strip()}
    assert allowed == HEALTHZ_ALLOWS[served.service], not_allowed.headers
    assert not_allowed.json()["error"] == "method_not_allowed"


# Heads of 40 KiB, two of them more than the cap together, and a 1 MiB body, which the route
# refuses (405) but not as a head: each head is judged on its own, and a body never counts.
# The 405 comes before the body is read, so the connection closes once it is: the head after
# it is not served (how heads after a body are counted: tests/unit/test_http_head.py).
PADDED_GET = _head_of(40 * 1024)
BIG_POST = b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s" % (
    1 << 20,
    b"a" * (1 << 20),
)
ONE_CONNECTION = (PADDED_GET, PADDED_GET, BIG_POST, PADDED_GET)
ANSWERED: list[int | str] = [200, 200, 405, "closed"]


def test_heads_are_capped_one_by_one_on_a_keep_alive_connection(served: Served) -> None:
    """Each request sent once the previous one is answered: its head starts a read."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=ANSWER_WITHIN_S) as sock:
        statuses = _statuses(sock, ONE_CONNECTION, pipelined=False)
    assert statuses == ANSWERED, served.output()


def test_heads_are_capped_one_by_one_when_pipelined(served: Served) -> None:
    """The requests in one write: the heads after the first start inside a read."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=ANSWER_WITHIN_S) as sock:
        statuses = _statuses(sock, ONE_CONNECTION, pipelined=True)
    assert statuses == ANSWERED, served.output()


def _statuses(
    sock: socket.socket, requests: Sequence[bytes], *, pipelined: bool
) -> list[int | str]:
    """The status of each request's answer; "closed" where the server had closed instead."""
    with sock.makefile("rb") as reader:
        if pipelined:
            _send(sock, b"".join(requests))
            return [_next_status(reader) for _ in requests]
        statuses: list[int | str] = []
        for request in requests:
            _send(sock, request)
            statuses.append(_next_status(reader))
        return statuses


def _send(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)  # a server that closed on us: its last answer is still to be read


def _next_status(reader: BinaryIO) -> int | str:
    """The status of the next whole answer (its head, then Content-Length bytes of body)."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        try:
            line = reader.readline()
        except ConnectionResetError:
            line = b""
        if not line:
            return "closed"
        head += line
    length = re.search(rb"(?i)\r\ncontent-length: (\d+)", head)
    assert length is not None, head
    reader.read(int(length.group(1)))
    return int(head.split(b" ", 2)[1])


def test_a_header_that_never_ends_is_refused_and_closed_while_others_are_served(
    served: Served,
) -> None:
    """A header sent without end: past the cap the server answers 431 and closes within
    seconds; a normal client is served before, while the head is open, and after."""
    assert served.healthz() == 200
    with socket.create_connection(("127.0.0.1", served.port), timeout=ANSWER_WITHIN_S) as sock:
        sock.sendall(ENDLESS_HEAD + CHUNK)  # under the cap: the head stays open
        assert served.healthz() == 200, "a normal request waited behind an open head"
        answer, sent = _flood_until_answered(sock)
        assert answer.startswith(b"HTTP/1.1 431 "), (
            f"{served.service}: {sent:,} bytes of one header got {answer[:80]!r}, not a 431"
        )
        assert b"connection: close" in answer.lower(), answer
        assert _closed_by_server(sock), f"{served.service} kept the connection open"
    assert served.healthz() == 200, served.output()
    assert served.process.poll() is None, served.output()


def _flood_until_answered(sock: socket.socket) -> tuple[bytes, int]:
    """Send the header on and on until the server answers or closes, or GIVE_UP_AFTER_BYTES
    are sent and it has not answered within ANSWER_WITHIN_S: what it answered and the count."""
    sent = 0
    sock.setblocking(False)
    while sent < GIVE_UP_AFTER_BYTES:
        readable, writable, _ = select.select([sock], [sock], [], ANSWER_WITHIN_S)
        if readable or not writable:
            break  # an answer, a close, or a server that stopped reading
        try:
            sent += sock.send(CHUNK)
        except (BrokenPipeError, ConnectionResetError):
            break  # closed on us: its answer, if any, is waiting to be read
    return _read_some(sock, time.monotonic() + ANSWER_WITHIN_S), sent


def _read_some(sock: socket.socket, deadline: float) -> bytes:
    """What the server sends next; b"" once it has closed, or at the deadline."""
    left = deadline - time.monotonic()
    if left <= 0 or not select.select([sock], [], [], left)[0]:
        return b""
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""  # closed with our unread header still in its buffer


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes within ANSWER_WITHIN_S (whatever else it sends is skipped)."""
    deadline = time.monotonic() + ANSWER_WITHIN_S
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            return False
        try:
            if not sock.recv(65536):
                return True
        except ConnectionResetError:
            return True
    return False


@pytest.mark.parametrize("service", SERVICES)
def test_sigterm_stops_the_service_with_status_0_and_service_stopped(
    service: str, redis_url: str, tmp_path: Path
) -> None:
    """As every other service under `ridepulse run`: uvicorn's graceful shutdown, then exit 0
    (ingest used to die by the re-raised signal, status -15, and log nothing)."""
    with _running(service, redis_url, tmp_path) as running:
        running.process.send_signal(signal.SIGTERM)
        try:
            code = running.process.wait(20)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{service} still running 20 s after SIGTERM") from None
        assert code == 0, f"{service} exited {code} on SIGTERM: {running.output()}"
        assert "service.stopped" in running.events(), running.output()


HEAD_TIMEOUT_S = 1.0


@pytest.fixture(scope="module", params=SERVICES)
def hurried(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """A service whose clients have HEAD_TIMEOUT_S to send a request's head."""
    data_dir = tmp_path_factory.mktemp(f"{request.param}-hurried")
    timeout = {"RIDEPULSE_HTTP_HEAD_TIMEOUT_S": str(HEAD_TIMEOUT_S)}
    with _running(request.param, redis_url, data_dir, **timeout) as running:
        yield running


@pytest.mark.parametrize("kept_alive", [False, True], ids=["new", "kept-alive"])
@pytest.mark.parametrize("trickle", [False, True], ids=["silent", "a byte at a time"])
def test_a_head_not_sent_in_time_is_answered_408_and_closed(
    hurried: Served, kept_alive: bool, trickle: bool
) -> None:
    """Slowloris: a connection that sends nothing, or a byte now and then, on a new connection
    or after a response on a kept-alive one, was held for ever (a file descriptor each)."""
    with socket.create_connection(("127.0.0.1", hurried.port), timeout=ANSWER_WITHIN_S) as sock:
        if kept_alive:
            assert _statuses(sock, [_head_of(200)], pipelined=False) == [200]
        started = time.monotonic()
        for byte in ENDLESS_HEAD if trickle else b"":
            if select.select([sock], [], [], 0.1)[0]:
                break  # answered (or closed) while we trickle
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.send(bytes([byte]))
        answer = _read_some(sock, started + HEAD_TIMEOUT_S + ANSWER_WITHIN_S)
        assert answer.startswith(b"HTTP/1.1 408 "), f"{hurried.service}: {answer[:80]!r}"
        assert time.monotonic() - started >= HEAD_TIMEOUT_S * 0.9
        answer = _whole_answer(sock, answer)
        assert _closed_by_server(sock), f"{hurried.service} kept the connection open"
    assert _json_error(answer, 408)["error"] == "request_timeout"
    assert hurried.healthz() == 200, hurried.output()


# A POST whose body is to come; every service answers 405 to a POST on /healthz at once.
UNREAD_BODY_BYTES = 100_000


def _post_head(path: str, length: int, token: str | None = None) -> bytes:
    auth = b"Authorization: Bearer %s\r\n" % token.encode() if token else b""
    return (
        b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n%s"
        % (
            path.encode(),
            auth,
        )
        + b"Content-Length: %d\r\n\r\n" % length
    )


def _trickle_until_closed(sock: socket.socket, deadline: float) -> tuple[float | None, bytes]:
    """A byte every 0.1 s until the server closes (when it did, or None at the deadline), and
    what it answered meanwhile."""
    answer = b""
    while time.monotonic() < deadline:
        try:
            if select.select([sock], [], [], 0.1)[0]:
                if not (chunk := sock.recv(65536)):
                    return time.monotonic(), answer
                answer += chunk
            sock.send(b" ")
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic(), answer + _read_some(sock, time.monotonic())
    return None, answer


def test_a_body_trickled_after_an_early_answer_is_closed_by_the_deadline(hurried: Served) -> None:
    """Slowloris in a body: an answer sent before the body was read (a 401, 405, 413, 503) left
    nothing timing the connection, and a byte every 2.5 s held it for ever (300 of them took
    ingest from 18 open files to 318). The answer now says `connection: close`."""
    with socket.create_connection(("127.0.0.1", hurried.port), timeout=ANSWER_WITHIN_S) as sock:
        sock.sendall(_post_head("/healthz", UNREAD_BODY_BYTES))
        started = time.monotonic()
        answer = _whole_answer(sock, _read_some(sock, started + ANSWER_WITHIN_S))
        assert answer.startswith(b"HTTP/1.1 405 "), f"{hurried.service}: {answer[:80]!r}"
        closed_at, _ = _trickle_until_closed(sock, started + HEAD_TIMEOUT_S + ANSWER_WITHIN_S)
    assert closed_at is not None, f"{hurried.service} still read the trickled body"
    assert closed_at - started >= HEAD_TIMEOUT_S * 0.9, "closed before its deadline"
    assert b"\r\nconnection: close\r\n" in answer.lower(), answer
    assert hurried.healthz() == 200, hurried.output()


@pytest.mark.parametrize("hurried", ["ingest"], indirect=True)
def test_a_body_the_app_waits_for_not_sent_in_time_is_answered_408_and_closed(
    hurried: Served,
) -> None:
    """The body of a fleet's batch, trickled: ingest waited for it for ever."""
    token = mint_token(SECRET, "fleet", "f-slow")
    with socket.create_connection(("127.0.0.1", hurried.port), timeout=ANSWER_WITHIN_S) as sock:
        sock.sendall(_post_head("/v1/telemetry", UNREAD_BODY_BYTES, token) + b'{"pings": [')
        started = time.monotonic()
        deadline = started + HEAD_TIMEOUT_S + ANSWER_WITHIN_S
        closed_at, answer = _trickle_until_closed(sock, deadline)
    assert closed_at is not None, "ingest still waited for the trickled body"
    assert closed_at - started >= HEAD_TIMEOUT_S * 0.9, "closed before its deadline"
    assert _json_error(answer, 408)["error"] == "request_timeout"
    assert hurried.healthz() == 200, hurried.output()


@pytest.mark.parametrize("hurried", ["ingest"], indirect=True)
def test_a_slow_batch_sent_within_the_deadline_is_served_and_its_connection_kept(
    hurried: Served,
) -> None:
    """A 1,000-ping fleet batch in ten pieces over half the deadline: accepted, and the
    connection serves the next request (the body came before the answer: no close)."""
    now = int(time.time() * 1000)
    pings = [
        {"driver_id": f"d-slow-{n}", "lat": 37.7793, "lon": -122.4193, "ts": now}
        for n in range(1000)
    ]
    body = orjson.dumps({"pings": pings})
    token = mint_token(SECRET, "fleet", "f-slow")
    with socket.create_connection(("127.0.0.1", hurried.port), timeout=ANSWER_WITHIN_S) as sock:
        sock.sendall(_post_head("/v1/telemetry", len(body), token))
        piece = len(body) // 10 + 1
        for start in range(0, len(body), piece):
            time.sleep(HEAD_TIMEOUT_S / 20)  # the trickle under test, not a wait for a result
            sock.sendall(body[start : start + piece])
        answer = _whole_answer(sock, _read_some(sock, time.monotonic() + ANSWER_WITHIN_S))
        assert answer.startswith(b"HTTP/1.1 202 "), answer[:300]
        assert b"connection: close" not in answer.lower(), answer
        assert _statuses(sock, [_head_of(200)], pipelined=False) == [200]


def test_an_early_answer_reaches_a_client_sending_its_body_and_then_the_connection_closes(
    served: Served,
) -> None:
    """Answered before its body is read, the connection closes once the body is in, not at
    once: closing on unread bytes resets the connection, and the client may lose the answer."""
    body = b"x" * (2 * 1024 * 1024)
    with socket.create_connection(("127.0.0.1", served.port), timeout=ANSWER_WITHIN_S) as sock:
        _send(sock, _post_head("/healthz", len(body)) + body)
        answer = _whole_answer(sock, _read_some(sock, time.monotonic() + ANSWER_WITHIN_S))
        assert answer.startswith(b"HTTP/1.1 405 "), f"{served.service}: {answer[:80]!r}"
        assert b"\r\nconnection: close\r\n" in answer.lower(), answer
        assert _closed_by_server(sock), f"{served.service} kept the connection open"


WS_PING_S = 1.0


@pytest.fixture(scope="module", params=SERVICES)
def pinging(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """A service that pings its WebSockets every WS_PING_S and lets one token hold one."""
    data_dir = tmp_path_factory.mktemp(f"{request.param}-pinging")
    settings = {
        "RIDEPULSE_WS_PING_S": str(WS_PING_S),
        "RIDEPULSE_DRIVER_WS_PER_TOKEN": "1",
        "RIDEPULSE_DASHBOARD_WS_PER_TOKEN": "1",
    }
    with _running(request.param, redis_url, data_dir, **settings) as running:
        yield running


def _socket_path(service: str) -> str:
    """The service's WebSocket with a token of its own: a driver's, or a dashboard link."""
    if service == "ingest":
        return f"/v1/drivers/d-silent/ws?token={mint_token(SECRET, 'driver', 'd-silent')}"
    return f"/ws?token={mint_dashboard_link(SECRET, 'silent-viewer')}"


def _upgrade(port: int, path: str) -> tuple[socket.socket, int]:
    """A WebSocket handshake by hand (a client library would answer the server's pings), and
    the status it got."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN_S)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, f"closed during the handshake: {head!r}"
        head += chunk
    return sock, int(head.split(b" ", 2)[1])


def test_a_websocket_peer_that_answers_no_ping_is_closed_and_its_place_freed(
    pinging: Served,
) -> None:
    """docs/security.md, "WebSocket caps": a vanished peer (gone without a FIN: no close frame,
    no TCP reset) is noticed by the keepalive ping, a pong due within RIDEPULSE_WS_PING_S of each
    ping sent every RIDEPULSE_WS_PING_S, and its place under the per-token cap is given back.
    This peer reads every frame, so only the missing pong can be what closes it."""
    path = _socket_path(pinging.service)
    silent, status = _upgrade(pinging.port, path)
    with silent:
        assert status == 101, pinging.output()
        opened = time.monotonic()
        over, over_status = _upgrade(pinging.port, path)
        over.close()
        assert over_status == 429, "the silent socket holds the token's one place"
        assert _closed_by_server(silent), f"{pinging.service} kept a peer that answers no ping"
        closed_after_s = time.monotonic() - opened
    assert closed_after_s >= WS_PING_S, f"closed after {closed_after_s:.2f}s, before any ping"

    def admitted() -> bool:
        again, again_status = _upgrade(pinging.port, path)
        again.close()
        return again_status == 101

    wait_until_sync(admitted, timeout_s=ANSWER_WITHIN_S, what="the silent socket's place")


@pytest.fixture(scope="module", params=SERVICES)
def uncapped(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """A service whose per-token WebSocket cap is 0."""
    data_dir = tmp_path_factory.mktemp(f"{request.param}-uncapped")
    settings = {"RIDEPULSE_DRIVER_WS_PER_TOKEN": "0", "RIDEPULSE_DASHBOARD_WS_PER_TOKEN": "0"}
    with _running(request.param, redis_url, data_dir, **settings) as running:
        yield running


def test_a_websocket_cap_of_0_is_no_cap(uncapped: Served) -> None:
    """README: 0 turns a limit off. One token opens one more socket than the default cap
    (RIDEPULSE_DRIVER_WS_PER_TOKEN 2, RIDEPULSE_DASHBOARD_WS_PER_TOKEN 20): all let in."""
    default_cap = Settings().driver_ws_per_token
    if uncapped.service != "ingest":
        default_cap = Settings().dashboard_ws_per_token
    path = _socket_path(uncapped.service)
    opened = [_upgrade(uncapped.port, path) for _ in range(default_cap + 1)]
    try:
        statuses = [status for _, status in opened]
        assert statuses == [101] * (default_cap + 1), (statuses, uncapped.output())
    finally:
        for sock, _ in opened:
            sock.close()


def test_a_driver_socket_whose_ping_storage_refuses_gets_an_unavailable_frame_and_stays(
    redis_url: str, tmp_path: Path
) -> None:
    """The HTTP API answers a ping Redis refuses with 503 + Retry-After; the driver socket ended
    with no word (the error escaped its loop), so the app neither paused nor knew why. Now the
    frame carries the 503's code and `retry_after_s`, and the socket stays for the next ping."""
    with _running("ingest", redis_url, tmp_path) as ingest:
        prefix = f"t{ingest.port}"
        telemetry = f"{prefix}:{{sf}}:telemetry"
        token = mint_token(SECRET, "driver", "d-refused")
        url = f"ws://127.0.0.1:{ingest.port}/v1/drivers/d-refused/ws?token={token}"
        ping = orjson.dumps({"lat": 37.7793, "lon": -122.4193}).decode()
        with redis.Redis.from_url(redis_url) as operator, ws_connect(url, open_timeout=10) as ws:
            operator.set(telemetry, "x")  # XADD on a string: WRONGTYPE
            ws.send(ping)
            frame = orjson.loads(ws.recv(timeout=ANSWER_WITHIN_S))
            assert frame == UNAVAILABLE_FRAME, frame
            operator.delete(telemetry)
            ws.send(ping)  # the same socket: the next ping is stored
            wait_until_sync(
                lambda: operator.xlen(telemetry) == 1,
                timeout_s=ANSWER_WITHIN_S,
                what="the ping sent after the refusal",
            )


def _memory_refusals(ingest: Served) -> float:
    """rp_redis_writes_refused_total{reason="memory"} on ingest's /metrics."""
    metrics = httpx.get(f"http://127.0.0.1:{ingest.port}/metrics", timeout=ANSWER_WITHIN_S)
    for family in text_string_to_metric_families(metrics.text):
        for sample in family.samples:
            if sample.name == "rp_redis_writes_refused_total" and sample.labels == {
                "reason": "memory"
            }:
                return sample.value
    return 0.0


def test_a_driver_socket_whose_ping_meets_a_full_server_gets_an_unavailable_frame_and_stays(
    own_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """README: a ping not stored because Redis refuses it (here out of memory: maxmemory 1,
    noeviction, on a server of the test's own) is answered `unavailable` with `retry_after_s`,
    the socket stays open, and once the server takes writes again the next ping is stored.
    The warning is logged as JSON (the module's logger, bound at import, wrote a console line
    into a JSON log), and the refused ping counted in rp_redis_writes_refused_total{memory} as
    HTTP's are (the socket's were not)."""
    with _running("ingest", own_server.url, tmp_path) as ingest:
        refused_before = _memory_refusals(ingest)
        telemetry = f"t{ingest.port}:{{sf}}:telemetry"
        token = mint_token(SECRET, "driver", "d-full")
        url = f"ws://127.0.0.1:{ingest.port}/v1/drivers/d-full/ws?token={token}"
        ping = orjson.dumps({"lat": 37.7793, "lon": -122.4193}).decode()
        with redis.Redis.from_url(own_server.url) as operator, ws_connect(url) as ws:
            operator.config_set("maxmemory-policy", "noeviction")
            operator.config_set("maxmemory", "1")
            try:
                ws.send(ping)
                frame = orjson.loads(ws.recv(timeout=ANSWER_WITHIN_S))
            finally:
                operator.config_set("maxmemory", "0")
            assert frame == UNAVAILABLE_FRAME, frame
            # a JSON event like every other (a logger bound at import wrote a console line)
            assert "driver_ws.ping_not_stored" in ingest.events(), ingest.output()
            assert _memory_refusals(ingest) == refused_before + 1
            ws.send(ping)  # the same socket: the next ping is stored
            wait_until_sync(
                lambda: operator.exists(telemetry) and operator.xlen(telemetry) == 1,
                timeout_s=ANSWER_WITHIN_S,
                what="the ping sent once the server took writes again",
            )


def test_a_shed_ping_on_a_driver_socket_gets_overloaded_with_the_sheds_retry_after(
    redis_url: str, tmp_path: Path
) -> None:
    """README: a ping shed while dispatch is behind is answered on the socket as HTTP answers
    it (429 `overloaded`, Retry-After): the frame's `retry_after_s` is the shedding's, here its
    cap, not the 1 s of other refusals, and the socket stays open. Matching's geo group is made
    to trail telemetry by two minutes: past the ceiling, every ping is shed."""
    with _running("ingest", redis_url, tmp_path) as ingest:
        telemetry = f"t{ingest.port}:{{sf}}:telemetry"
        token = mint_token(SECRET, "driver", "d-shed")
        headers = {"Authorization": f"Bearer {token}"}
        ping = {"lat": 37.7793, "lon": -122.4193}
        with redis.Redis.from_url(redis_url) as operator:
            seconds, _ = operator.time()
            behind_ms = (seconds - 120) * 1000
            operator.xadd(telemetry, {"data": b"{}"}, id=f"{behind_ms}-0")
            operator.xgroup_create(telemetry, "matching.geo", id="0")

        def retry_after_of_a_shed_ping() -> str | None:
            response = httpx.post(
                f"http://127.0.0.1:{ingest.port}/v1/drivers/d-shed/location",
                json=ping,
                headers=headers,
                timeout=ANSWER_WITHIN_S,
            )
            return response.headers["Retry-After"] if response.status_code == 429 else None

        retry_after = wait_until_sync(retry_after_of_a_shed_ping, what="ingest to shed pings")
        assert retry_after == str(MAX_RETRY_AFTER_S), retry_after
        url = f"ws://127.0.0.1:{ingest.port}/v1/drivers/d-shed/ws?token={token}"
        with ws_connect(url) as ws:
            ws.send(orjson.dumps(ping).decode())
            frame = orjson.loads(ws.recv(timeout=ANSWER_WITHIN_S))
            assert (frame["type"], frame["error"]) == ("error", "overloaded"), frame
            assert frame["retry_after_s"] == MAX_RETRY_AFTER_S, frame
            ws.send("not json")  # still open: the next message is answered on the same socket
            assert orjson.loads(ws.recv(timeout=ANSWER_WITHIN_S))["error"] == "invalid_input"
