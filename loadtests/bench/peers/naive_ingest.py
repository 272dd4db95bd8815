"""The naive peer: FastAPI + a pydantic body model + one XADD per request.

What a competent user writes first: validated input, the same eight-field entry, an approximate
MAXLEN, no coalescing (every request is its own round trip to Redis). Two variants: without
authentication (DESIGN §10's reference peer), and with the JWT check every real ingest needs,
as a FastAPI dependency decoding the token on each request (same rule: a driver posts only for
itself, fleets for anyone)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import jwt
import orjson
import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from pydantic import BaseModel, Field

PATH = "/v1/drivers/{driver_id}/location"


class PingIn(BaseModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    ts: int | None = None
    speed_mps: float | None = Field(None, ge=0, le=90)
    heading: float | None = Field(None, ge=0, le=360)
    accuracy_m: float | None = Field(None, ge=0, le=10_000)


class Caller(BaseModel):
    sub: str
    role: str


def caller(request: Request, authorization: Annotated[str, Header()]) -> Caller:
    _, _, token = authorization.partition(" ")
    secret = request.app.state.secret
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], issuer="ridepulse", audience="api")
    except jwt.InvalidTokenError as exc:
        raise HTTPException(401, str(exc)) from None
    return Caller(sub=claims["sub"], role=claims["role"])


async def append(request: Request, driver_id: str, ping: PingIn) -> dict[str, int]:
    now = int(time.time() * 1000)
    stamped = {"driver_id": driver_id, **ping.model_dump(exclude_none=True), "ts": ping.ts or now}
    fields = {
        "id": str(uuid.uuid4()),
        "type": "driver.location",
        "v": "1",
        "source": "naive",
        "time": str(now),
        "subject": f"driver/{driver_id}",
        "data": orjson.dumps({"pings": [stamped]}),
        "traceparent": "",
    }
    await request.app.state.redis.xadd(
        request.app.state.stream, fields, maxlen=100_000, approximate=True
    )
    return {"accepted": 1}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.secret = os.environ.get("BENCH_SECRET", "")
    app.state.stream = os.environ["BENCH_STREAM"]
    app.state.redis = aioredis.from_url(os.environ["BENCH_REDIS_URL"], max_connections=64)
    yield
    await app.state.redis.aclose()


def create_app() -> FastAPI:
    app = FastAPI(lifespan=lifespan)

    @app.post(PATH, status_code=202)
    async def post_location(driver_id: str, ping: PingIn, request: Request) -> dict[str, int]:
        return await append(request, driver_id, ping)

    return app


def create_app_with_jwt() -> FastAPI:
    app = FastAPI(lifespan=lifespan)

    @app.post(PATH, status_code=202)
    async def post_location(
        driver_id: str, ping: PingIn, request: Request, who: Annotated[Caller, Depends(caller)]
    ) -> dict[str, int]:
        if who.role not in ("fleet", "ops") and who.sub != driver_id:
            raise HTTPException(403, "a driver may only post for itself")
        return await append(request, driver_id, ping)

    return app
