"""`ridepulse run dashboard`: the page and its live feed under uvicorn; returns on SIGTERM."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from dashboard.app import create_app
from dashboard.forwarded import TrustedProxyHeaders
from ridepulse.logs import configure_logging
from ridepulse.settings import Settings

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
MAX_CLIENT_MESSAGE_BYTES = 64 * 1024  # the page sends nothing that matters; refuse big frames


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its graceful shutdown, so the process would die by the
    signal; like the other services, `main` returns instead and the process exits 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def main(settings: Settings) -> None:
    configure_logging("dashboard", settings.log_level, settings.log_format)
    _Server(uvicorn_config(create_app(settings), settings)).run()


def uvicorn_config(app: FastAPI, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """How the dashboard serves; tests override only logging and shutdown.

    permessage-deflate is off: every frame is the same text for all clients, so compressing it
    per client (each socket keeps its own deflate context) was the dashboard's largest cost per
    client (docs/benchmarks-dashboard.md). On loopback or a LAN the bytes are cheap; behind a
    slow link, put a compressing proxy in front."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.dashboard_port,
        "loop": "uvloop",
        "http": "httptools",
        "ws": "websockets-sansio",
        "ws_per_message_deflate": False,
        "access_log": False,
        "log_level": "warning",
        "timeout_graceful_shutdown": 5,
        "ws_max_size": MAX_CLIENT_MESSAGE_BYTES,
        # the proxy headers are read by TrustedProxyHeaders (X-Forwarded-Host too), not uvicorn
        "proxy_headers": False,
    }
    served = TrustedProxyHeaders(app, settings.forwarded_allow_ips)
    return uvicorn.Config(served, **{**options, **overrides})


if __name__ == "__main__":
    main(Settings())
