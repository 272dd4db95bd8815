"""Fan-out: one state, many clients. The ticker turns pending changes into numbered deltas (at
most one per tick), keeps a ring of recent ones for resuming clients, and offers each frame to
every client's bounded queue. A full queue is cleared and refilled by one fresh snapshot: a slow
browser is coalesced, never waited for."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque

from dashboard.config import FeedConfig
from dashboard.metrics import CLIENTS, CLIENTS_DROPPED, DELTAS, DROPPED_FRAMES, SNAPSHOTS
from dashboard.protocol import encode
from dashboard.state import CityState

Frame = tuple[str, ...]  # one queue item: a message, or a resuming client's backlog of deltas


class Client:
    def __init__(self, queue_size: int) -> None:
        self.queue: asyncio.Queue[Frame] = asyncio.Queue(maxsize=queue_size)
        self.needs_snapshot = False
        self.resets = 0  # coalesces since the last frame this client actually took
        self.gone = asyncio.Event()  # set when the hub gives up on this client

    def took_frame(self) -> None:
        self.resets = 0


class Hub:
    def __init__(self, state: CityState, config: FeedConfig, epoch: str | None = None) -> None:
        self.state = state
        self.config = config
        self.epoch = epoch or uuid.uuid4().hex[:12]  # seqs are only comparable within one epoch
        self.seq = 0
        self.ring: deque[tuple[int, str]] = deque(maxlen=config.ring_size)
        self.clients: set[Client] = set()
        self._snapshot_waiters: list[asyncio.Future[str]] = []
        self.watched = asyncio.Event()  # set when someone wants the city: samplers wake at once

    def connect(self, last_seq: int | None = None, epoch: str | None = None) -> Client:
        """A new client: the deltas it missed when they are all still in the ring, else a
        snapshot at the next tick."""
        client = Client(self.config.client_queue_size)
        backlog = self.missing_since(last_seq) if epoch == self.epoch else None
        if backlog is None:
            client.needs_snapshot = True
        elif backlog:
            client.queue.put_nowait(tuple(backlog))
        self.clients.add(client)
        CLIENTS.set(len(self.clients))
        self.watched.set()
        return client

    def disconnect(self, client: Client) -> None:
        self.clients.discard(client)
        CLIENTS.set(len(self.clients))

    def missing_since(self, last_seq: int | None) -> list[str] | None:
        if last_seq is None or last_seq > self.seq:
            return None
        if last_seq == self.seq:
            return []
        if not self.ring or self.ring[0][0] > last_seq + 1:
            return None
        return [text for seq, text in self.ring if seq > last_seq]

    async def snapshot_text(self) -> str:
        """The snapshot built at the next tick (where it is consistent with the deltas)."""
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._snapshot_waiters.append(waiter)
        self.watched.set()
        return await waiter

    def tick_interval_s(self) -> float:
        """Seconds until the next tick: longer with more clients (FeedConfig.tick_s_per_client)."""
        return max(self.config.tick_s, len(self.clients) * self.config.tick_s_per_client)

    def tick(self) -> None:
        delta = self.state.take_delta(self.seq + 1)
        if delta is not None:
            self.seq += 1
            text = encode(delta)
            self.ring.append((self.seq, text))
            DELTAS.inc()
            for client in list(self.clients):
                if not client.needs_snapshot:
                    self._offer(client, (text,))
        waiting = [c for c in self.clients if c.needs_snapshot]
        if waiting or self._snapshot_waiters:
            text = encode(self.state.snapshot(self.seq, self.epoch))
            SNAPSHOTS.inc()
            for client in waiting:
                client.needs_snapshot = False
                self._offer(client, (text,))
            for waiter in self._snapshot_waiters:
                if not waiter.done():
                    waiter.set_result(text)
            self._snapshot_waiters.clear()

    def _offer(self, client: Client, frame: Frame) -> None:
        try:
            client.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self._coalesce(client, frame)

    def _coalesce(self, client: Client, frame: Frame) -> None:
        dropped = len(frame)
        while not client.queue.empty():
            dropped += len(client.queue.get_nowait())
        DROPPED_FRAMES.inc(dropped)
        client.needs_snapshot = True
        client.resets += 1
        if client.resets > self.config.max_resets:
            CLIENTS_DROPPED.inc()
            self.disconnect(client)
            client.gone.set()
