"""A lean asyncio HTTP/1.1 load generator on raw sockets: keep-alive, no pipelining.

`closed_loop` keeps N connections busy (the fallback when wrk is missing); `paced` sends a fixed
rate open-loop and measures latency from each request's scheduled time, so a stalled server
shows up as latency instead of silently lowering the offered load (no coordinated omission)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from loadtests.bench.stats import percentile
from loadtests.bench.wrk import LoadResult

HOST = "127.0.0.1"


def build_request(
    method: str, path: str, *, token: str | None = None, body: bytes = b"", port: int = 80
) -> bytes:
    head = [
        f"{method} {path} HTTP/1.1",
        f"Host: {HOST}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if token:
        head.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class HttpConnection:
    """One keep-alive connection; `send` writes a request and reads its whole response."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @classmethod
    async def open(cls, port: int) -> HttpConnection:
        return cls(*await asyncio.open_connection(HOST, port, limit=2**20))

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)
        }
        if "content-length" in headers:  # every contender answers with one (none chunks)
            return status, await self.reader.readexactly(int(headers["content-length"]))
        return status, b""

    def close(self) -> None:
        self.writer.close()


async def _in_turn(
    port: int, pending: Iterator[bytes], connections: int
) -> list[tuple[int, float]]:
    """(status, seconds) of each request from `pending` over N keep-alive connections, each
    sending the next request as soon as its previous answer arrived."""
    answers: list[tuple[int, float]] = []

    async def worker() -> None:
        conn = await HttpConnection.open(port)
        try:
            for raw in pending:
                sent = time.perf_counter()
                status, _ = await conn.send(raw)
                answers.append((status, time.perf_counter() - sent))
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return answers


async def closed_loop(
    port: int, requests: list[bytes], *, connections: int, seconds: float
) -> LoadResult:
    """N connections cycling through `requests` until `seconds` are up."""
    started = time.perf_counter()
    deadline = started + seconds
    cycle = itertools.cycle(requests)
    pending = itertools.takewhile(lambda _: time.perf_counter() < deadline, cycle)
    answers = await _in_turn(port, pending, connections)
    elapsed = time.perf_counter() - started
    us = [latency * 1e6 for _, latency in answers] or [0.0]
    errors = sum(status >= 300 for status, _ in answers)
    return LoadResult(len(answers), errors, elapsed, percentile(us, 50), percentile(us, 99))


@dataclass
class PacedResult:
    """What a paced sender did: counts by status, latency (ms) from the scheduled send time."""

    scheduled: int = 0
    completed: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0  # connection errors

    @property
    def accepted(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)


async def paced(
    port: int,
    make_request: Callable[[int], bytes],
    *,
    rate_per_s: float,
    seconds: float,
    max_connections: int = 64,
) -> PacedResult:
    """Send `make_request(i)` at `rate_per_s` for `seconds`, over at most `max_connections`."""
    result = PacedResult()
    opened = 0
    idle: asyncio.Queue[HttpConnection] = asyncio.Queue()
    tasks: set[asyncio.Task[None]] = set()

    async def one(raw: bytes, scheduled: float) -> None:
        nonlocal opened
        if idle.empty() and opened < max_connections:
            opened += 1
            conn = await HttpConnection.open(port)
        else:
            conn = await idle.get()
        try:
            status, _ = await conn.send(raw)
        except (OSError, asyncio.IncompleteReadError):
            result.failures += 1
            conn.close()
            opened -= 1
            return
        result.latencies_ms.append((time.perf_counter() - scheduled) * 1000)
        result.statuses[status] = result.statuses.get(status, 0) + 1
        result.completed += 1
        idle.put_nowait(conn)

    started = time.perf_counter()
    for index in itertools.count():
        scheduled = started + index / rate_per_s
        if scheduled - started >= seconds:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(make_request(index), scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        result.scheduled += 1
    if tasks:
        await asyncio.wait(tasks, timeout=15)
    while not idle.empty():
        idle.get_nowait().close()
    return result


async def send_all(port: int, requests: list[bytes], *, connections: int) -> dict[int, int]:
    """Send every request once over N connections; status → count."""
    answers = await _in_turn(port, iter(requests), min(connections, len(requests)) or 1)
    return dict(Counter(status for status, _ in answers))
