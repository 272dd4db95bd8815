"""Ingest in process: the FastAPI app over httpx's ASGI transport (no uvicorn, no subprocess),
its lifespan run as uvicorn would, against whatever server `settings` names. One client for
every test that talks to ingest without a platform around it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import redis.asyncio as aioredis

from ingest.app import create_app
from ingest.deps import Deps
from ridepulse.auth import mint_token
from ridepulse.keys import MarketKeys
from ridepulse.settings import Settings

DOWNTOWN = {"lat": 37.7793, "lon": -122.4193}
SF_TRIP = {"pickup": DOWNTOWN, "dropoff": {"lat": 37.7893, "lon": -122.4093}}


@dataclass
class Ingest:
    http: httpx.AsyncClient
    deps: Deps
    settings: Settings

    def auth(self, role: str, subject: str) -> dict[str, str]:
        token = mint_token(self.settings.secret or "", role, subject)
        return {"Authorization": f"Bearer {token}"}

    async def ping(self, driver: str, body: Any, role: str = "driver") -> httpx.Response:
        return await self.http.post(
            f"/v1/drivers/{driver}/location", json=body, headers=self.auth(role, driver)
        )

    async def batch(self, pings: list[dict[str, Any]], role: str = "fleet") -> httpx.Response:
        """A fleet's POST /v1/telemetry of these pings."""
        return await self.http.post(
            "/v1/telemetry", json={"pings": pings}, headers=self.auth(role, "f1")
        )

    async def quote(
        self, rider: str, pickup: dict[str, float], dropoff: dict[str, float]
    ) -> httpx.Response:
        """The rider's GET /v1/quote of the trip from `pickup` to `dropoff` ({lat, lon} each)."""
        params = {
            "pickup_lat": pickup["lat"],
            "pickup_lon": pickup["lon"],
            "dropoff_lat": dropoff["lat"],
            "dropoff_lon": dropoff["lon"],
        }
        return await self.http.get("/v1/quote", params=params, headers=self.auth("rider", rider))

    async def request_ride(self, rider: str, trip: dict[str, Any], key: str) -> httpx.Response:
        """The rider's POST /v1/rides of `trip` under Idempotency-Key `key`."""
        headers = {**self.auth("rider", rider), "Idempotency-Key": key}
        return await self.http.post("/v1/rides", json=trip, headers=headers)


@asynccontextmanager
async def start(settings: Settings) -> AsyncIterator[Ingest]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
            yield Ingest(http, app.state.deps, settings)


async def pings_in(redis: aioredis.Redis, stream: str) -> list[dict[str, Any]]:
    """Every ping on `stream`, in order."""
    entries: Any = await redis.xrange(stream)
    return [p for _, fields in entries for p in orjson.loads(fields[b"data"])["pings"]]


def telemetry(settings: Settings) -> str:
    return MarketKeys("sf", settings.key_prefix).telemetry
