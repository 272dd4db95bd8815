"""`ridepulse run ingest`: the API under uvicorn (ridepulse/http_server.py); returns on SIGTERM."""

from __future__ import annotations

from ingest.app import create_app
from ingest.routes_driver_ws import MAX_FRAME_BYTES
from ingest.write_refusal_watch import refuse_start_without_aof
from ridepulse.gc_tuning import tune_gc
from ridepulse.http_server import serve, uvicorn_config, wait_for_redis
from ridepulse.logs import configure_logging
from ridepulse.settings import Settings


def main(settings: Settings) -> None:
    configure_logging("ingest", settings.log_level, settings.log_format)
    if not wait_for_redis(settings):
        return  # stopped while Redis was away
    refuse_start_without_aof(settings)  # a durable ride request would never get its 202
    app = create_app(settings)
    tune_gc()
    config = uvicorn_config(
        app,
        settings,
        port=settings.api_port,
        timeout_graceful_shutdown=10,
        ws_max_size=MAX_FRAME_BYTES,  # a driver's frame past it: 1009, never read whole
        # A ping or an offer is ~100-300 bytes: deflate saves nothing on it, and each socket's
        # zlib context (~46 KB) outlived it until the next collection (soak: +45 KB a socket)
        ws_per_message_deflate=False,
    )
    serve(config)
