"""The step scripts: loaded once from the .lua files beside this module, with the shared prelude,
and the KEYS/ARGV layout they all share (documented at the top of prelude.lua)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache
from importlib import resources

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from ridepulse.keys import MarketKeys
from ridepulse.rides.state import Transition

# Steps that create a ride. Without flags, a script is refused under OOM only at its first
# memory-growing command, and only if it has not written yet: request_ride's first write can be
# an SREM (pruning the rider's finished rides), after which a whole new ride would be written on
# a full server. A `#!lua` line makes the server refuse the script at its start instead
# (docs/reliability.md: out of memory, writes are refused). The other steps keep the legacy
# rule, so a full server can still finish, cancel and expire rides, which frees memory.
REFUSED_WHOLE_WHEN_FULL = frozenset({"request_ride"})


@cache
def script_source(name: str) -> str:
    """The prelude followed by the step's own file."""
    package = resources.files("ridepulse.rides")
    prelude = package.joinpath("prelude.lua").read_text()
    shebang = "#!lua\n" if name in REFUSED_WHOLE_WHEN_FULL else ""
    return f"{shebang}{prelude}\n{package.joinpath(f'{name}.lua').read_text()}"


@dataclass(frozen=True, slots=True)
class Scripts:
    """One registered script per atomic step; redis-py runs EVALSHA with a NOSCRIPT fallback."""

    request_ride: AsyncScript
    offer_ride: AsyncScript
    accept_offer: AsyncScript
    requeue_ride: AsyncScript
    move_trip: AsyncScript
    complete_trip: AsyncScript
    cancel_ride: AsyncScript
    expire_ride: AsyncScript
    set_driver_status: AsyncScript
    set_eta: AsyncScript
    lose_driver: AsyncScript
    evict_drivers: AsyncScript
    leave_market: AsyncScript

    @classmethod
    def register(cls, redis: aioredis.Redis) -> Scripts:
        return cls(**{f.name: redis.register_script(script_source(f.name)) for f in fields(cls)})


def step_keys(keys: MarketKeys, ride_id: str) -> list[str]:
    """KEYS 1-10 of every ride step; step-specific keys follow."""
    return [
        keys.ride(ride_id),
        keys.rides,
        keys.ride_applied(ride_id),
        keys.active_rides,
        keys.open_rides,
        keys.offer_timeouts,
        keys.ride_counts,
        keys.driver_statuses,
        keys.drivers_geo,
        keys.positions,
    ]


def _flag(value: bool) -> str:
    return "1" if value else "0"


def step_argv(
    row: Transition,
    *,
    event_id: str,
    source: str,
    ride_id: str,
    driver_id: str = "",
    expected_version: int | None = None,
    traceparent: str = "",
) -> list[str]:
    """ARGV 1-17 of every ride step: the identity of the event and the step's row of the table."""
    return [
        event_id,
        source,
        row.event_type,
        str(row.event_version),
        ",".join(sorted(row.from_states)),
        row.to,
        row.counter,
        _flag(row.terminal),
        _flag(row.opens),
        _flag(row.awaits_answer),
        ",".join(sorted(row.driver_from)),
        row.driver_to or "",
        _flag(row.driver_holds_ride),
        "" if expected_version is None else str(expected_version),
        ride_id,
        driver_id,
        traceparent,
    ]
