"""The rides whose ETA eta keeps fresh, by driver: a ping is one dict lookup away from its ride.

In memory, fed by the ride events and rebuilt at start from the ride projections, so a restart
does not wait for the next ride.matched to resume updates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis

from ridepulse.keys import MarketKeys
from ridepulse.rides.projection import Ride, decode_hash

Phase = Literal["pickup", "trip"]
LOAD_CHUNK = 500


@dataclass(slots=True)
class ActiveRide:
    """One ride in its pickup or trip phase; `last_*` is what riders were last told."""

    ride_id: str
    market: str
    driver_id: str
    phase: Phase
    target_lat: float
    target_lon: float
    last_eta_s: float | None = None
    last_sent_ms: int | None = None
    last_ping_ts: int = 0

    @classmethod
    def of(cls, ride: Ride) -> ActiveRide | None:
        """Matched rides head for the pickup, started ones for the dropoff; others have no ETA
        to keep fresh (driver_arrived: the pickup is done and the trip has not begun)."""
        if ride.driver_id is None:
            return None
        if ride.status == "matched":
            return cls(
                ride.ride_id,
                ride.market,
                ride.driver_id,
                "pickup",
                ride.pickup.lat,
                ride.pickup.lon,
                last_eta_s=ride.pickup_eta_s,
            )
        if ride.status == "started":
            return cls(
                ride.ride_id,
                ride.market,
                ride.driver_id,
                "trip",
                ride.dropoff.lat,
                ride.dropoff.lon,
                last_eta_s=ride.trip_eta_s,
            )
        return None


class ActiveRides:
    """driver → its active ride, and ride → driver to forget a ride by the id its events carry."""

    def __init__(self) -> None:
        self._by_driver: dict[str, ActiveRide] = {}
        self._driver_of: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._by_driver)

    def track(self, ride: ActiveRide) -> None:
        """A driver holds one ride at a time: tracking replaces its previous one."""
        self.forget_ride(ride.ride_id)
        previous = self._by_driver.get(ride.driver_id)
        if previous is not None:
            self._driver_of.pop(previous.ride_id, None)
        self._by_driver[ride.driver_id] = ride
        self._driver_of[ride.ride_id] = ride.driver_id

    def of_driver(self, driver_id: str) -> ActiveRide | None:
        return self._by_driver.get(driver_id)

    def of_ride(self, ride_id: str) -> ActiveRide | None:
        driver_id = self._driver_of.get(ride_id)
        return None if driver_id is None else self._by_driver.get(driver_id)

    def forget_market(self, market: str) -> None:
        """Drop every ride of ``market`` (its lease went to another replica, or is retaken)."""
        for ride in [r for r in self._by_driver.values() if r.market == market]:
            self.forget_ride(ride.ride_id)

    def forget_ride(self, ride_id: str) -> None:
        driver_id = self._driver_of.pop(ride_id, None)
        if driver_id is not None:
            self._by_driver.pop(driver_id, None)


async def load_active(redis: aioredis.Redis, keys: MarketKeys) -> list[ActiveRide]:
    """Every ride of the market now in its pickup or trip phase (active set + ride hashes)."""
    ride_ids: Any = await redis.zrange(keys.active_rides, 0, -1)
    found: list[ActiveRide] = []
    for start in range(0, len(ride_ids), LOAD_CHUNK):
        pipe = redis.pipeline(transaction=False)
        for raw_id in ride_ids[start : start + LOAD_CHUNK]:
            pipe.hgetall(keys.ride(raw_id.decode()))
        for raw in await pipe.execute():
            active = ActiveRide.of(Ride.from_hash(decode_hash(raw))) if raw else None
            if active is not None:
                found.append(active)
    return found
