"""How the quality city answers surge (issue 13.4): riders who decline a high multiplier and
drivers who move toward surging cells. Pure policies (unit-tested) plus the two hooks that put
them into a `Scenario` (loadtests/quality/scenario.py `Hooks`).

- Riders: a quote at multiplier m is accepted with probability m ** -ELASTICITY (1.0: a 1.5x
  quote is taken two times in three, 2x one time in two). Ride-hailing demand studies put the
  price elasticity around -0.5 to -1 in the short run; 1.0 is the sensitive end, so declines for
  price are not understated.
- Drivers: a fixed share (CHASER_SHARE, chosen by a hash of the driver id and seed, so the same
  drivers chase in every run of a seed) of idle drivers with no offer head for the centre of the
  highest surging cell within CHASE_RADIUS_M, if it surges at least CHASE_MIN_MULTIPLIER.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from typing import Any

import h3
import redis.asyncio as aioredis

from loadtests.behaviours.streets import XY, Frame
from loadtests.quality.city import KEY_PREFIX
from loadtests.quality.scenario import CityContext, DriverState, Hooks
from ridepulse.keys import MarketKeys

ELASTICITY = 1.0
CHASER_SHARE = 0.5
CHASE_RADIUS_M = 1500.0
CHASE_MIN_MULTIPLIER = 1.2
ARRIVED_M = 150.0  # a chaser this close to the surging cell's centre stays put


def accept_probability(multiplier: float, elasticity: float = ELASTICITY) -> float:
    return 1.0 if multiplier <= 1.0 else multiplier**-elasticity


def rider_accepts(quote: dict[str, Any], rng: random.Random) -> bool:
    """The rider's answer to a quote (`surge` is its multiplier)."""
    return rng.random() < accept_probability(float(quote.get("surge") or 1.0))


def is_chaser(driver_id: str, share: float = CHASER_SHARE) -> bool:
    """Whether this driver follows surge: a stable draw from its id (ids carry the seed)."""
    digest = hashlib.blake2b(driver_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


def chase_target(
    position: XY,
    surge: Mapping[str, float],
    frame: Frame,
    radius_m: float = CHASE_RADIUS_M,
    min_multiplier: float = CHASE_MIN_MULTIPLIER,
) -> XY | None:
    """The centre of the highest surging cell within reach (ties: the nearer), or None."""
    best: tuple[float, float, XY] | None = None
    for cell, multiplier in surge.items():
        if multiplier < min_multiplier:
            continue
        lat, lon = h3.cell_to_latlng(cell)
        centre = frame.to_xy(lat, lon)
        distance = math.dist(position, centre)
        if distance > radius_m:
            continue
        key = (-multiplier, distance, centre)
        if best is None or key[:2] < best[:2]:
            best = key
    if best is None or best[1] <= ARRIVED_M:
        return None
    return frame.clamp(*best[2])


async def surge_cells(redis_url: str, market: str) -> dict[str, float]:
    """Pricing's read model: the multiplier of every surging cell (a driver app's heat map)."""
    client = aioredis.from_url(redis_url)
    try:
        raw: Any = await client.hgetall(MarketKeys(market, KEY_PREFIX).surge)
    finally:
        await client.aclose()
    return {k.decode(): float(v) for k, v in raw.items()}


async def chase_surge(driver: DriverState, ctx: CityContext) -> XY | None:
    if not is_chaser(driver.driver_id):
        return None
    cells = await surge_cells(ctx.redis_url, ctx.scenario.market)
    return chase_target(driver.position, cells, ctx.grid.frame)


SURGE_RESPONSE = Hooks(rider_accepts=rider_accepts, driver_reposition=chase_surge)
