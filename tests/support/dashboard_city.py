"""Writes what the other services would write (projections, streams, heartbeats), so dashboard
tests control the city exactly. Shapes follow ridepulse.keys and the ride scripts' contract."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Any

import h3
import orjson
import redis.asyncio as aioredis

from ridepulse.contracts.envelope import now_ms
from ridepulse.contracts.registry import make
from ridepulse.keys import GlobalKeys, MarketKeys
from ridepulse.markets import load_markets

STEPS = ("requested", "offered", "matched", "driver_arrived", "started", "completed")
DRIVER_FOR_RIDE = {
    "offered": "offered",
    "matched": "en_route",
    "driver_arrived": "en_route",
    "started": "on_trip",
}
SF = load_markets().default
# Where a simulated city is busy: downtown, the Mission, the Marina, the Sunset.
HOTSPOTS = ((37.7890, -122.4010), (37.7599, -122.4148), (37.8010, -122.4370), (37.7530, -122.4900))


@dataclass
class RideWriter:
    """One ride, moved through its lifecycle the way the ride scripts do: the projection hash,
    the active set, the counts, and one event on the rides stream per step."""

    redis: aioredis.Redis
    keys: MarketKeys
    ride_id: str
    pickup: tuple[float, float]
    dropoff: tuple[float, float]
    rider_id: str = "rider-1"
    driver_id: str = ""
    version: int = 0
    fields: dict[str, str] = field(default_factory=dict)
    # the stream entry's id carries the step's time (`<at>-*`) rather than the clock's: a ride
    # written "in the past" then sits where the server would have put it; steps go in time order
    stamp_ids: bool = False

    async def step(
        self, status: str, *, at_ms: int | None = None, driver_id: str | None = None, **extra: Any
    ) -> None:
        at = at_ms or now_ms()
        self.version += 1
        if driver_id:
            self.driver_id = driver_id
        if status == "requested":
            self.fields = {
                "ride_id": self.ride_id,
                "rider_id": self.rider_id,
                "market": self.keys.market,
                "pickup_lat": str(self.pickup[0]),
                "pickup_lon": str(self.pickup[1]),
                "dropoff_lat": str(self.dropoff[0]),
                "dropoff_lon": str(self.dropoff[1]),
                "deadline_at": str(at + 60_000),
                "driver_id": "",
                "fare": "",
                "surge": "",
                "pickup_eta_s": "",
                "trip_eta_s": "",
            }
        self.fields.update(status=status, version=str(self.version), driver_id=self.driver_id)
        self.fields[f"{status}_at"] = str(at)
        for name, value in extra.items():
            self.fields[name] = "" if value is None else str(value)
        data = self._event_data(status, at, extra)
        envelope = replace(
            make(f"ride.{status}", f"ride/{self.ride_id}", data, "test/sim"), time=at
        )
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.ride(self.ride_id), mapping=dict[Any, Any](self.fields))
        if status in ("completed", "cancelled", "expired"):
            pipe.zrem(self.keys.active_rides, self.ride_id)
        else:
            pipe.zadd(
                self.keys.active_rides, {self.ride_id: int(self.fields.get("requested_at") or at)}
            )
        pipe.hincrby(self.keys.ride_counts, status, 1)
        if self.driver_id:
            driver_status = DRIVER_FOR_RIDE.get(status, "available")
            pipe.hset(self.keys.driver_statuses, self.driver_id, driver_status)
        entry_id = f"{at}-*" if self.stamp_ids else "*"
        pipe.xadd(self.keys.rides, envelope.to_fields(), id=entry_id)  # type: ignore[arg-type]
        await pipe.execute()

    def _event_data(self, status: str, at: int, extra: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {"ride_id": self.ride_id, "version": self.version}
        if status == "requested":
            data.update(
                rider_id=self.rider_id,
                requested_at=at,
                deadline_at=at + 60_000,
                pickup={"lat": self.pickup[0], "lon": self.pickup[1]},
                dropoff={"lat": self.dropoff[0], "lon": self.dropoff[1]},
            )
        elif status == "offered":
            data.update(
                driver_id=self.driver_id,
                pickup_eta_s=extra.get("pickup_eta_s") or 120.0,
                expires_at=at + 10_000,
                attempt=1,
            )
        elif status == "cancelled":
            data.update(by="rider")
        elif status != "expired":
            data.update(driver_id=self.driver_id)
        if status == "completed" and extra.get("fare") is not None:
            data.update(fare=float(extra["fare"]))
        return data


async def put_drivers(
    redis: aioredis.Redis, keys: MarketKeys, drivers: dict[str, tuple[float, float, str]]
) -> None:
    """driver → (lat, lon, status): the positions and statuses hashes the consumers keep."""
    ts = now_ms()
    pipe = redis.pipeline(transaction=False)
    pipe.hset(
        keys.positions,
        mapping={d: f"{lat:.6f},{lon:.6f},{ts}," for d, (lat, lon, _) in drivers.items()},
    )
    pipe.hset(keys.driver_statuses, mapping={d: status for d, (_, _, status) in drivers.items()})
    await pipe.execute()


async def put_surge(redis: aioredis.Redis, keys: MarketKeys, cells: dict[str, float]) -> None:
    envelope = make(
        "surge.updated",
        f"market/{keys.market}",
        {
            "market": keys.market,
            "cells": [{"cell": c, "multiplier": m} for c, m in cells.items()],
        },
        "test/pricing",
    )
    pipe = redis.pipeline(transaction=False)
    pipe.hset(keys.surge, mapping={c: str(m) for c, m in cells.items()})
    pipe.xadd(keys.surge_events, envelope.to_fields())  # type: ignore[arg-type]
    await pipe.execute()


async def put_heartbeat(
    redis: aioredis.Redis,
    prefix: str,
    service: str,
    processed: int,
    *,
    lag: int = 0,
    pending: int = 0,
    ttl_s: int = 5,
) -> None:
    gkeys = GlobalKeys(prefix)
    consumer = f"{service}-1"
    data = {
        "service": service,
        "consumer": consumer,
        "processed": processed,
        "failed": 0,
        "dead_lettered": 0,
        "lag": lag,
        "pending": pending,
        "pid": 4242,
        "rss_bytes": 60_000_000,
    }
    key = gkeys.heartbeat(service, consumer)
    pipe = redis.pipeline(transaction=False)
    pipe.set(key, orjson.dumps({**data, "time": now_ms()}), ex=ttl_s)
    pipe.sadd(gkeys.heartbeats, key)
    fields = make("service.heartbeat", f"service/{service}", data, consumer).to_fields()
    pipe.xadd(gkeys.health, fields)  # type: ignore[arg-type]
    await pipe.execute()


class CitySim:
    """A deterministic busy city: drivers that drive, rides that move through their lifecycle,
    surge around hotspots, telemetry with consumer groups that lag a little, and heartbeats."""

    GROUPS = ("matching", "eta", "pricing")

    def __init__(self, redis: aioredis.Redis, prefix: str, seed: int = 7) -> None:
        self.redis = redis
        self.prefix = prefix
        self.keys = MarketKeys(SF.id, prefix)
        self.rng = random.Random(seed)
        self.drivers: dict[str, list[Any]] = {}  # id → [lat, lon, heading°, status]
        self.rides: list[tuple[RideWriter, int]] = []  # (writer, index of its current step)
        self.processed = dict.fromkeys(("ingest", *self.GROUPS), 0)
        self.serial = 0

    def _point(self) -> tuple[float, float]:
        lat, lon = (
            self.rng.choice(HOTSPOTS) if self.rng.random() < 0.7 else (SF.center.lat, SF.center.lon)
        )
        spread = 0.012 if self.rng.random() < 0.7 else 0.03
        lat = min(max(lat + self.rng.gauss(0, spread), 37.712), 37.808)
        return lat, min(max(lon + self.rng.gauss(0, spread * 1.2), -122.51), -122.36)

    async def seed(self, drivers: int = 200, rides: int = 30) -> None:
        for i in range(drivers):
            lat, lon = self._point()
            self.drivers[f"drv-{i:04d}"] = [lat, lon, self.rng.uniform(0, 360), "available"]
        for group in self.GROUPS:
            await self.redis.xgroup_create(self.keys.telemetry, group, id="$", mkstream=True)
        cells: dict[str, float] = {}
        for lat, lon in HOTSPOTS[:3]:
            center = h3.latlng_to_cell(lat, lon, 8)
            peak = round(self.rng.uniform(1.8, 2.8), 1)
            for ring in range(3):
                for cell in h3.grid_ring(center, ring):
                    cells[cell] = max(
                        cells.get(cell, 1.0),
                        round(max(1.1, peak - 0.45 * ring - self.rng.random() * 0.2), 1),
                    )
        await put_surge(self.redis, self.keys, cells)
        for _ in range(rides):
            await self._new_ride(advance=self.rng.randint(0, 4))
        await self._publish_drivers()

    async def _new_ride(self, advance: int = 0) -> None:
        self.serial += 1
        free = [d for d, v in self.drivers.items() if v[3] == "available"]
        driver = self.rng.choice(free) if free else ""
        pickup = self._point()
        dropoff = (
            min(max(pickup[0] + self.rng.gauss(0, 0.014), 37.712), 37.808),
            min(max(pickup[1] + self.rng.gauss(0, 0.018), -122.51), -122.36),
        )
        writer = RideWriter(
            self.redis,
            self.keys,
            f"ride-{self.serial:05d}",
            pickup,
            dropoff,
            rider_id=f"rider-{self.serial:05d}",
        )
        start = now_ms() - (advance * 20_000 + self.rng.randint(0, 15_000) if advance else 0)
        await writer.step("requested", at_ms=start)
        for index in range(1, advance + 1):
            await self._advance(
                writer, index, driver, at_ms=start + index * self.rng.randint(3000, 9000)
            )
        self.rides.append((writer, advance))

    async def _advance(
        self, writer: RideWriter, index: int, driver: str, at_ms: int | None = None
    ) -> None:
        status = STEPS[index]
        extra: dict[str, Any] = {}
        if status in ("offered", "matched"):
            extra["pickup_eta_s"] = round(self.rng.uniform(60, 420))
        if status == "completed":
            extra["fare"] = round(self.rng.uniform(9, 48), 2)
        await writer.step(status, at_ms=at_ms, driver_id=driver or None, **extra)
        if writer.driver_id in self.drivers:
            self.drivers[writer.driver_id][3] = DRIVER_FOR_RIDE.get(status, "available")

    async def _publish_drivers(self) -> None:
        await put_drivers(
            self.redis, self.keys, {d: (v[0], v[1], v[3]) for d, v in self.drivers.items()}
        )

    async def tick(self) -> None:
        """One second of city: drivers move, a few rides advance or start, telemetry flows."""
        for v in self.drivers.values():
            v[2] = (v[2] + self.rng.gauss(0, 25)) % 360
            step = 0.0006 if v[3] != "available" else 0.0003
            v[0] = min(max(v[0] + step * _cos(v[2]), 37.712), 37.808)
            v[1] = min(max(v[1] + step * 1.25 * _sin(v[2]), -122.51), -122.36)
        await self._publish_drivers()
        for i, (writer, index) in enumerate(list(self.rides)):
            if index < len(STEPS) - 1 and self.rng.random() < 0.25:
                driver = self.rng.choice(
                    [d for d, v in self.drivers.items() if v[3] == "available"] or [""]
                )
                await self._advance(writer, index + 1, writer.driver_id or driver)
                self.rides[i] = (writer, index + 1)
        self.rides = [(w, i) for w, i in self.rides if i < len(STEPS) - 1]
        for _ in range(self.rng.randint(1, 3)):
            await self._new_ride()
        await self._telemetry()

    async def _telemetry(self) -> None:
        batch = self.rng.randint(140, 220)
        pipe = self.redis.pipeline(transaction=False)
        for _ in range(batch):
            pipe.xadd(
                self.keys.telemetry, {"type": "driver.location"}, maxlen=50_000, approximate=True
            )
        await pipe.execute()
        self.processed["ingest"] += batch * 20
        for group in self.GROUPS:
            count = batch + self.rng.randint(-45, 40)
            await self.redis.xreadgroup(
                group, f"{group}-1", {self.keys.telemetry: ">"}, count=max(1, count)
            )
            self.processed[group] += count
        for service, processed in self.processed.items():
            await put_heartbeat(
                self.redis, self.prefix, service, processed, lag=self.rng.randint(0, 60)
            )


def _cos(deg: float) -> float:
    return math.cos(math.radians(deg))


def _sin(deg: float) -> float:
    return math.sin(math.radians(deg))
