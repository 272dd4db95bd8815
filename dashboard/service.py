"""`ridepulse run dashboard`: the page and its live feed under uvicorn
(ridepulse/http_server.py); returns on SIGTERM."""

from __future__ import annotations

from typing import Any

import uvicorn
from fastapi import FastAPI

from dashboard.app import create_app
from dashboard.forwarded import TrustedProxyHeaders
from ridepulse import http_server
from ridepulse.logs import configure_logging
from ridepulse.settings import Settings

MAX_CLIENT_MESSAGE_BYTES = 64 * 1024  # the page sends nothing that matters; refuse big frames


def main(settings: Settings) -> None:
    configure_logging("dashboard", settings.log_level, settings.log_format)
    if not http_server.wait_for_redis(settings):
        return  # stopped while Redis was away
    http_server.serve(uvicorn_config(create_app(settings), settings))


def uvicorn_config(app: FastAPI, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """How the dashboard serves; tests override only logging and shutdown.

    permessage-deflate is off: every frame is the same text for all clients, so compressing it
    per client (each socket keeps its own deflate context) was the dashboard's largest cost per
    client (docs/benchmarks-dashboard.md). On loopback or a LAN the bytes are cheap; behind a
    slow link, put a compressing proxy in front."""
    options: dict[str, Any] = {
        "ws": "websockets-sansio",
        "ws_per_message_deflate": False,
        "timeout_graceful_shutdown": 5,
        "ws_max_size": MAX_CLIENT_MESSAGE_BYTES,
        # the proxy headers are read by TrustedProxyHeaders (X-Forwarded-Host too), not uvicorn
        "proxy_headers": False,
    }
    served = TrustedProxyHeaders(app, settings.forwarded_allow_ips)
    return http_server.uvicorn_config(
        served, settings, port=settings.dashboard_port, **{**options, **overrides}
    )


if __name__ == "__main__":
    main(Settings())
