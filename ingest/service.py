"""`ridepulse run ingest`: the API under uvicorn (uvloop + httptools, no access log)."""

from __future__ import annotations

import uvicorn

from ingest.app import create_app
from ridepulse.gc_tuning import tune_gc
from ridepulse.logs import configure_logging
from ridepulse.settings import Settings


def main(settings: Settings) -> None:
    configure_logging("ingest", settings.log_level, settings.log_format)
    app = create_app(settings)
    tune_gc()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.api_port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=10,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )
