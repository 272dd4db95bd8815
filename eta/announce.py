"""Turning a position into an announced ETA: estimate, then write it to the ride and announce
eta.updated in one step."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from eta.active import ActiveRide, Phase
from eta.deps import EtaDeps
from ridepulse.bus.metrics import EVENTS_PUBLISHED
from ridepulse.bus.producer import NOTIFICATION_MAXLEN
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


async def write_and_announce(
    deps: EtaDeps, updates: Sequence[tuple[ActiveRide, float, str]]
) -> None:
    """Each ride's new ETA into its hash and its eta.updated (with the given event id) onto the
    market's eta stream, both in one call of RideStore's set_eta script per ride, one pipeline
    per market instead of a round trip per ride (a telemetry batch can move hundreds of rides).
    Leased, each call carries the market's lease and this replica's fence (one slot: every key
    holds the market's tag), so a replica paused past its lease neither overwrites the new
    owner's ETA nor announces its own after the new owner's; a refusal raises LeaseLost."""
    by_market: dict[str, list[tuple[ActiveRide, float, str]]] = {}
    for update in updates:
        by_market.setdefault(update[0].market, []).append(update)
    for market, items in by_market.items():
        store = deps.stores[market]
        stream = store.keys.eta_events
        lease, fence = deps.fence(market)
        calls: list[tuple[list[str], list[str | bytes | int]]] = []
        for ride, eta_s, event_id in items:
            name = ETA_FIELD[ride.phase]
            value = inputs.number(name, eta_s, inputs.SECONDS_DIGITS)
            fields = announce(deps, ride, eta_s, event_id).to_fields()
            keys = [store.keys.ride(ride.ride_id), stream] + ([lease] if lease else [])
            event = [part for pair in fields.items() for part in pair]
            calls.append((keys, [fence, 2, name, value, NOTIFICATION_MAXLEN, *event]))
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
        EVENTS_PUBLISHED.labels(stream).inc(sum(1 for reply in replies if int(reply) == 1))
