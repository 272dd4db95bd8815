"""Turning a position into an announced ETA: estimate, write to the ride, build eta.updated."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from eta.active import ActiveRide, Phase
from eta.deps import EtaDeps
from ridepulse.contracts.envelope import Envelope
from ridepulse.contracts.events import EtaUpdatedV1
from ridepulse.contracts.registry import make
from ridepulse.redis_client import pipelines_take_scripts
from ridepulse.rides import inputs

ETA_FIELD: dict[Phase, str] = {"pickup": "pickup_eta_s", "trip": "trip_eta_s"}


def estimate(deps: EtaDeps, ride: ActiveRide, lat: float, lon: float) -> float:
    """Seconds from (lat, lon) to the ride's target at the speeds eta has learned so far."""
    model = deps.models[ride.market]
    return round(model.travel_time_s(lat, lon, ride.target_lat, ride.target_lon), 1)


def announce(deps: EtaDeps, ride: ActiveRide, eta_s: float, event_id: str) -> Envelope:
    """The eta.updated event; remembers what riders were told, which the throttle compares to."""
    ride.last_eta_s = eta_s
    ride.last_sent_ms = deps.clock()
    data = EtaUpdatedV1(
        ride_id=ride.ride_id, driver_id=ride.driver_id, phase=ride.phase, eta_s=eta_s
    )
    return make("eta.updated", f"ride/{ride.ride_id}", data, deps.source, event_id=event_id)


async def write_etas(deps: EtaDeps, updates: Sequence[tuple[ActiveRide, float]]) -> None:
    """Each ride's new ETA into its hash: RideStore's set_eta script, one pipeline per market
    instead of a round trip per ride (a telemetry batch can move hundreds of rides). Leased,
    each call carries the market's lease and this replica's fence (one slot: both keys hold
    the market's tag); a refusal raises LeaseLost, so nothing of the batch is announced."""
    by_market: dict[str, list[tuple[ActiveRide, float]]] = {}
    for ride, eta_s in updates:
        by_market.setdefault(ride.market, []).append((ride, eta_s))
    for market, items in by_market.items():
        store = deps.stores[market]
        lease, fence = deps.fence(market)
        calls = []
        for ride, eta_s in items:
            name = ETA_FIELD[ride.phase]
            value = inputs.number(name, eta_s, inputs.SECONDS_DIGITS)
            keys = [store.keys.ride(ride.ride_id)] + ([lease] if lease else [])
            calls.append((keys, [fence, name, value]))
        if not pipelines_take_scripts(deps.redis):
            replies = await asyncio.gather(
                *(store.scripts.set_eta(keys=k, args=a) for k, a in calls)
            )
        else:
            pipe = deps.redis.pipeline(transaction=False)
            for keys, args in calls:
                await store.scripts.set_eta(keys=keys, args=args, client=pipe)
            replies = await pipe.execute()
        if any(int(reply) < 0 for reply in replies):
            raise deps.refused(market)
