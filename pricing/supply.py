"""Supply: the available drivers where matching's geo index holds them, read once per surge tick.

Why not from telemetry: counting supply from every ping cost pricing about a fifth of a core at
50,000 pings/s to learn what the index already knows. It holds available drivers only, kept in
step with each status change by the ride scripts, and matching's sweeper drops the silent ones.
One read per tick costs in proportion to the available drivers, not to the ping rate."""

from __future__ import annotations

from typing import Any

from pricing.deps import PricingDeps

CHUNK = 5_000


async def sample_supply(deps: PricingDeps, market: str, at_ms: int) -> int:
    """Replace the window's supply with the drivers available now; returns how many."""
    geo = deps.keys(market).drivers_geo
    members: Any = await deps.redis.zrange(geo, 0, -1)
    cells: dict[str, str] = {}
    for start in range(0, len(members), CHUNK):
        chunk = members[start : start + CHUNK]
        positions: Any = await deps.redis.geopos(geo, *chunk)
        for member, position in zip(chunk, positions, strict=True):
            if position is not None:  # left the index between the two reads
                lon, lat = position
                cells[member.decode()] = deps.cell_of(lat, lon)
    deps.markets[market].window.replace_supply(cells)
    return len(cells)
