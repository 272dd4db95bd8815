"""The dashboard app: wiring only. The Redis client and the feed are built in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from dashboard import routes, ws
from dashboard.config import FeedConfig
from dashboard.feed import Feed, served_markets
from dashboard.openapi import install_openapi, operation_id
from ridepulse import http_metrics
from ridepulse.auth import resolve_secret
from ridepulse.http_errors import install_error_handlers
from ridepulse.logs import get_logger
from ridepulse.redis_client import connect
from ridepulse.settings import Settings
from ridepulse.ws_cap import ConnectionCap


def create_app(settings: Settings, config: FeedConfig | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = connect(settings)
        served = served_markets(settings)
        feeds = {m.id: Feed(redis, settings, config, market=m, served=served) for m in served}
        app.state.feeds = feeds
        app.state.feed = feeds[served[0].id]  # the default market's: what `?market=` omits
        for feed in feeds.values():
            feed.start()
        get_logger().info("dashboard.started", markets=list(feeds), port=settings.dashboard_port)
        try:
            yield
        finally:
            for feed in feeds.values():
                await feed.stop()
            await redis.aclose()

    app = FastAPI(
        title="RidePulse dashboard",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,  # a 404, not a 307 at the client's Host (as ingest: its app.py)
    )
    app.state.settings = settings
    app.state.secret = resolve_secret(settings) if settings.auth_enabled else ""
    app.state.feed_cap = ConnectionCap(settings.dashboard_ws_per_token)

    install_error_handlers(app)  # the API's JSON errors, a Redis outage's 503 included
    app.include_router(routes.router)
    app.include_router(http_metrics.router)
    app.add_api_websocket_route("/ws", ws.feed_socket)
    app.mount("/static", StaticFiles(directory=routes.STATIC), name="static")
    install_openapi(app)
    return app
