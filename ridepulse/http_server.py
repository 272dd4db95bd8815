"""How the HTTP services (ingest, dashboard) serve under uvicorn: uvloop, httptools with a cap on
a request's head (`ridepulse/http_head.py`), no access log. SIGTERM or Ctrl-C drains as uvicorn
does, then `serve` returns: the process exits 0 and has logged `service.stopped`, as every
consumer service does. Left to itself, uvicorn re-raises the signal once it has shut down, so
the process died by it (exit status -15) without a word."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from ridepulse.bus.worker import START_PATIENCE_S, stop_on_signals, until_redis_answers
from ridepulse.http_head import with_head_timeout
from ridepulse.logs import get_logger
from ridepulse.redis_client import connect
from ridepulse.settings import Settings

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def uvicorn_config(app: Any, settings: Settings, *, port: int, **options: Any) -> uvicorn.Config:
    """What both services share; each adds its own options (WebSocket, shutdown) or overrides."""
    shared: dict[str, Any] = {
        "host": settings.host,
        "port": port,
        "loop": "uvloop",
        "http": with_head_timeout(settings.http_head_timeout_s),
        # a peer that vanished without a FIN (a phone off the network) answers no ping: its
        # socket, and its place under the per-token cap, go within twice this
        "ws_ping_interval": settings.ws_ping_s,
        "ws_ping_timeout": settings.ws_ping_s,
        "access_log": False,
        "log_level": "warning",
        "forwarded_allow_ips": settings.forwarded_allow_ips,
    }
    return uvicorn.Config(app, **{**shared, **options})


def wait_for_redis(settings: Settings, patience_s: float = START_PATIENCE_S) -> bool:
    """Start-up, as the consumer services do it (`until_redis_answers`): retry while Redis is
    away, for `patience_s`, then let the error out (`ridepulse run` turns it into one line): a
    wrong URL must not look like a service up and waiting. Once serving, an outage is a 503 per
    request instead. False when SIGTERM or SIGINT came meanwhile: the service stops there,
    exit 0, as a consumer service does (it was a KeyboardInterrupt, exit 130)."""
    if settings.redis_url is None:
        return True  # `ridepulse run` refuses to start without one; the app's first call would

    async def ping() -> None:
        client = connect(settings, for_requests=True)  # a frozen server: a 3 s try, not 10
        try:
            await client.ping()
        finally:
            await client.aclose()

    async def wait() -> bool:
        return await until_redis_answers(ping, stop_on_signals(), "service.start", patience_s)

    if asyncio.run(wait()):
        return True
    get_logger().info("service.stopped")
    return False


def serve(config: uvicorn.Config) -> None:
    """Serve until SIGTERM or SIGINT, drain, log `service.stopped` and return."""
    server = _Server(config)
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)  # as `uvicorn.run`: nothing was served
    get_logger().info("service.stopped")


class _Server(uvicorn.Server):
    """uvicorn's server, minus the signal it would raise again after its graceful shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
