"""The driver WebSocket (`WS /v1/drivers/{id}/ws?token=...`) for a locust DriverUser.

Uses the `websockets` sync client. Locust has gevent monkey-patch sockets and threads, so the
client's background reader runs as a greenlet and its blocking calls yield to the hub; the user's
own greenlet only sends (fast) and drains received messages with `recv(timeout=0)`, so it never
blocks a tick. A broken connection is reported as a failed "WS connect"/"WS ping" sample and
reopened on the next tick.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
from locust.env import Environment
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from loadtests.behaviours.ping_pause import frame_retry_after_s
from loadtests.users.samples import fire_sample

OPEN_TIMEOUT_S = 10.0
MAX_DRAIN = 100  # messages per tick; a flood must not starve the ping loop


class DriverSocket:
    def __init__(self, environment: Environment, base_url: str, driver_id: str, token: str) -> None:
        parts = urlsplit(base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        self.url = (
            f"{scheme}://{parts.netloc}/v1/drivers/{quote(driver_id)}/ws?token={quote(token)}"
        )
        self.environment = environment
        self.connection: ClientConnection | None = None
        # the longest pause asked for by an error frame since the last take_pause_s()
        self.pause_s = 0.0

    def send(self, ping: dict[str, Any]) -> bool:
        """Send one ping, connecting first if needed; False when the socket is down."""
        if self.connection is None and not self._connect():
            return False
        assert self.connection is not None
        started = time.perf_counter()
        payload = orjson.dumps(ping).decode()
        try:
            self.connection.send(payload)
        except (WebSocketException, OSError) as exc:
            self._fire("ping", started, len(payload), exc)
            self.close()
            return False
        self._fire("ping", started, len(payload), None)
        return True

    def drain(self) -> list[dict[str, Any]]:
        """Every message that arrived since the last tick, decoded; non-JSON frames are skipped."""
        messages: list[dict[str, Any]] = []
        while self.connection is not None and len(messages) < MAX_DRAIN:
            try:
                raw = self.connection.recv(timeout=0)
            except TimeoutError:
                break
            except (WebSocketException, OSError):
                self.close()
                break
            try:
                message = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(message, dict) and message.get("type") == "error":
                retry_after_s = frame_retry_after_s(message)
                if retry_after_s:  # shed or over its rate: as HTTP's 429 + Retry-After, a pause
                    self.pause_s = max(self.pause_s, retry_after_s)
                    continue
                # the server refused a ping sent over the socket: as much a failure as a 4xx
                fire_sample(
                    self.environment, "WS", "ping rejected", 0, exception=str(message.get("detail"))
                )
            elif isinstance(message, dict):
                messages.append(message)
        return messages

    def take_pause_s(self) -> float:
        """The pause the server asked for since the last call (0: none); the driver holds its
        pings that long."""
        pause_s, self.pause_s = self.pause_s, 0.0
        return pause_s

    def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(WebSocketException, OSError):
                self.connection.close()
            self.connection = None

    def _connect(self) -> bool:
        started = time.perf_counter()
        try:
            self.connection = connect(
                self.url,
                open_timeout=OPEN_TIMEOUT_S,
                close_timeout=2,
                proxy=None,
                compression=None,
                legacy=True,
            )
        except (WebSocketException, OSError, TimeoutError) as exc:
            self._fire("connect", started, 0, exc)
            return False
        self._fire("connect", started, 0, None)
        return True

    def _fire(self, name: str, started: float, length: int, exc: BaseException | None) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        fire_sample(self.environment, "WS", name, elapsed_ms, response_length=length, exception=exc)
