"""The fan-out bench's WebSocket clients, all in this process, with a browser's defaults
(permessage-deflate offered, no keepalive pings). Every client reads every frame; every
`measure_every`-th also parses it (parsing 2,000 clients' frames would saturate this process
before the dashboard): latency = receive time − the time the event's Lua step wrote it (Redis
TIME, ms), taken when the event first reaches the client in a delta."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

CONNECTS_AT_ONCE = 50
CONNECT_TIMEOUT_S = 120.0


@dataclass
class Recorder:
    """What the clients saw in the window: the frames received and the events written in it."""

    expected: int
    window: tuple[float, float] = (math.inf, math.inf)  # epoch ms, both ends included
    all_connected: asyncio.Event = field(default_factory=asyncio.Event)
    latencies_ms: list[float] = field(default_factory=list)
    connected: int = 0
    frames: int = 0
    text_bytes: int = 0
    connect_s: float = math.nan  # from the first connect to the last client's handshake

    def receive(self, text: bytes, at_ms: float, measured: bool) -> None:
        start, end = self.window
        if start <= at_ms <= end:
            self.frames, self.text_bytes = self.frames + 1, self.text_bytes + len(text)
        if not measured:
            return
        message = orjson.loads(text)
        if message["kind"] == "delta":
            times = [event["time"] for event in message.get("events", ())]
            self.latencies_ms += [at_ms - t for t in times if start <= t <= end]


async def watch(url: str, recorder: Recorder, gate: asyncio.Semaphore, measured: bool) -> None:
    """One client, until cancelled or dropped by the hub (the dashboard's /metrics count it)."""
    async with gate:
        # permessage-deflate offered, as a browser does (the dashboard declines it)
        ws = await connect(url, max_size=None, ping_interval=None, open_timeout=60, close_timeout=2)
    recorder.connected += 1
    if recorder.connected == recorder.expected:
        recorder.all_connected.set()
    async with ws:
        with contextlib.suppress(ConnectionClosed):
            while True:
                recorder.receive(await ws.recv(decode=False), time.time() * 1000, measured)


@contextlib.asynccontextmanager
async def clients(
    url: Callable[[int], str], count: int, recorder: Recorder, measure_every: int
) -> AsyncIterator[None]:
    """`count` clients, the i-th on `url(i)`, all connected before the body runs."""
    gate, started = asyncio.Semaphore(CONNECTS_AT_ONCE), time.monotonic()
    tasks = [
        asyncio.create_task(watch(url(i), recorder, gate, i % measure_every == 0))
        for i in range(count)
    ]
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(recorder.all_connected.wait(), CONNECT_TIMEOUT_S)
        if recorder.connected < count:
            raise RuntimeError(f"{recorder.connected}/{count} clients connected in 120 s")
        recorder.connect_s = time.monotonic() - started
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def loop_lag_ms(stop: asyncio.Event, out: list[float]) -> None:
    """How late this process's event loop wakes up: when high, its clients read late too."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(0.05)
        out.append((loop.time() - before - 0.05) * 1000)
