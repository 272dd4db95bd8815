"""The public API: wiring only. Routes live in routes_*.py, decisions in small modules."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from redis.exceptions import RedisError

from ingest import (
    routes_driver_ws,
    routes_drivers,
    routes_health,
    routes_quotes,
    routes_rides,
    routes_telemetry,
)
from ingest.batcher import TelemetryBatcher
from ingest.deps import Deps
from ingest.driver_homes import DriverHomes
from ingest.market_moves import MarketMoves
from ingest.notifier import DriverNotifier
from ingest.openapi import install_docs, operation_id
from ingest.ratelimit import PingRateLimiter
from ingest.responses import JSON
from ingest.shedding import watch_telemetry_lag
from ingest.write_refusal_watch import WriteRefusalWatch
from ridepulse import http_metrics
from ridepulse.auth import resolve_secret
from ridepulse.background import Background
from ridepulse.bus.heartbeat import Heartbeat
from ridepulse.bus.worker import consumer_name
from ridepulse.http_errors import install_error_handlers
from ridepulse.keys import MarketKeys
from ridepulse.markets import load_markets
from ridepulse.redis_client import connect
from ridepulse.rides.store import RideStore
from ridepulse.settings import Settings

DESCRIPTION = """Driver telemetry and ride requests in; ride state out.

Authenticate with `Authorization: Bearer <token>` (`ridepulse token <role> <id>` mints one).
Errors are JSON `{"error", "detail", "field"}`; 429 and 503 carry `Retry-After`."""


TELEMETRY_CONNECTIONS = 8  # the batcher holds one per market stream while an append is in flight
NOTIFIER_CONNECTIONS = 4  # one XREAD per slot the driver streams span (one without a cluster)


def build_deps(settings: Settings) -> Deps:
    # rides, quotes, cancels, driver actions: never wait on telemetry. A request client: a frozen
    # or cut-off server answers a request 503 within seconds, not after a blocked read's timeout
    redis = connect(settings, for_requests=True)
    # telemetry's group commit gets a pool of its own, so a slow or large append never holds a
    # connection a ride request is waiting for (issue 10, rides first)
    telemetry_redis = connect(
        settings.model_copy(update={"redis_max_connections": TELEMETRY_CONNECTIONS}),
        for_requests=True,
    )
    # the notifier's XREAD BLOCKs: the one client here whose reads wait on purpose
    notifier_redis = connect(
        settings.model_copy(update={"redis_max_connections": NOTIFIER_CONNECTIONS})
    )
    markets = load_markets(settings.markets_file, settings.markets)
    source = f"ingest/{socket.gethostname()}/{os.getpid()}"
    homes = (
        DriverHomes(settings.key_prefix, markets.by_id, settings.driver_evict_s)
        if len(markets.markets) > 1
        else None
    )
    stores = {
        m.id: RideStore(
            redis,
            MarketKeys(m.id, settings.key_prefix),
            source,
            driver_stale_s=settings.driver_stale_s,
        )
        for m in markets.markets
    }
    moves = MarketMoves(homes, stores) if homes is not None else None
    deps = Deps(
        settings=settings,
        redis=redis,
        markets=markets,
        secret=resolve_secret(settings),
        batcher=TelemetryBatcher(
            telemetry_redis,
            source=source,
            maxlen=settings.telemetry_maxlen,
            homes=homes,
            moved=moves.recorded if moves is not None else None,
        ),
        homes=homes,
        moves=moves,
        limiter=PingRateLimiter(settings.ping_rate_per_s, settings.ping_burst),
        stores=stores,
        source=source,
    )

    async def driver_of_ride(ride_id: str) -> str | None:
        try:
            ride = await deps.store_for_ride(ride_id).get(ride_id)
        except Exception:
            return None
        return ride.driver_id or ride.offer_driver_id if ride else None

    streams = [
        k for m in markets.markets for k in (deps.keys(m.id).rides, deps.keys(m.id).eta_events)
    ]
    deps.notifier = DriverNotifier(notifier_redis, streams, driver_of_ride)
    return deps


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        deps = build_deps(settings)
        app.state.deps = deps
        # ingest has no consumer group, but ops (status, the dashboard's services panel) must
        # see it alive like every other service
        heartbeat = Heartbeat(
            deps.redis,
            prefix=settings.key_prefix,
            service="ingest",
            consumer=consumer_name(settings, "ingest"),
            interval_s=settings.heartbeat_interval_s,
            processed=lambda: deps.batcher.pings_appended,
            telemetry_admitted=lambda: deps.admission.share,
            durable_writes=settings.durable_writes,  # `ridepulse status` judges an AOF off by it
        )
        # each watched: one that ends before shutdown is named by /readyz, never dead unseen
        deps.background = background = Background()
        background.start("notifier", deps.notifier.run)
        background.start("shedding", partial(watch_telemetry_lag, deps))
        background.start("heartbeat", heartbeat.run)
        if deps.moves is not None:
            background.start("market_moves", deps.moves.run)
        deps.refusals = WriteRefusalWatch(deps.redis, settings.durable_writes)
        with contextlib.suppress(RedisError, OSError):  # Redis away: /readyz says so anyway
            await deps.refusals.check()  # the first /readyz already knows
        background.start("write_refusals", deps.refusals.run)
        try:
            yield
        finally:
            await background.close()
            with contextlib.suppress(RedisError, OSError):
                await heartbeat.clear()  # stopped on purpose, not dead
            await deps.notifier.redis.aclose()
            await deps.batcher.redis.aclose()
            await deps.redis.aclose()

    app = FastAPI(
        title="RidePulse API",
        version="1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=JSON,
        generate_unique_id_function=operation_id,
        # /docs is installed below with local assets; ReDoc would load its script from a CDN
        docs_url=None,
        redoc_url=None,
        # no 307 from `/v1/drivers/d-1/` (or `d-1%2F`) to `/v1/drivers/d-1`: it sent a client
        # to another resource, at a Location built from the Host it sent. A 404 instead.
        redirect_slashes=False,
    )
    install_error_handlers(app)
    app.include_router(routes_telemetry.ping_router)
    for module in (
        routes_telemetry,
        routes_driver_ws,
        routes_drivers,
        routes_quotes,
        routes_rides,
        routes_health,
    ):
        app.include_router(module.router)
    app.include_router(http_metrics.router, tags=["operations"])
    install_docs(app)
    return app
