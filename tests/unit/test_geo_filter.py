"""matching-geo's filter of pings that change nothing: a driver is written when new, when it
moved far enough, or when its freshness is due; everything else is skipped and counted."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from matching.geo_filter import PositionFilter
from matching.geo_index import update_positions
from matching.geo_service import geo_filter
from ridepulse.contracts.events import Ping
from ridepulse.keys import MarketKeys
from ridepulse.settings import Settings

ORIGIN = (37.7749, -122.4194)


def ping(driver_id: str, north_m: float, ts: int, east_m: float = 0.0) -> Ping:
    return Ping(
        driver_id=driver_id,
        lat=ORIGIN[0] + north_m / 111_320,
        lon=ORIGIN[1] + east_m / 88_000,  # ~111,320 x cos(37.77°)
        ts=ts,
        heading=0,
    )


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000

    def __call__(self) -> int:
        return self.ms


def ids(pings: list[object]) -> list[str]:
    return [p.driver_id for p in pings]  # type: ignore[attr-defined]


def written(f: PositionFilter, market: str, *pings: Ping) -> list[str]:
    stamp, keep = f.select(market, pings)
    f.wrote(market, stamp + keep, len(stamp))
    return ids([*stamp, *keep])


def test_a_new_driver_is_written_and_a_parked_one_is_skipped_until_its_freshness_is_due() -> None:
    clock = Clock()
    f = PositionFilter(min_move_m=20, refresh_ms=10_000, clock_ms=clock)
    assert written(f, "sf", ping("d1", 0, 1)) == ["d1"]
    clock.ms += 4_000
    assert written(f, "sf", ping("d1", 5, 2)) == []  # GPS jitter, 4 s later
    clock.ms += 4_000
    assert written(f, "sf", ping("d1", -5, 3)) == []
    clock.ms += 2_000  # 10 s since the write: freshness due
    assert written(f, "sf", ping("d1", 0, 4)) == ["d1"]
    assert f.skipped == 2


def test_a_driver_is_written_once_it_moved_the_minimum_from_the_last_written_position() -> None:
    clock = Clock()
    f = PositionFilter(min_move_m=20, refresh_ms=10_000, clock_ms=clock)
    written(f, "sf", ping("d1", 0, 1))
    # 12 m then 24 m from the last *written* position: slow drift adds up
    assert written(f, "sf", ping("d1", 12, 2)) == []
    assert written(f, "sf", ping("d1", 24, 3)) == ["d1"]
    assert written(f, "sf", ping("d1", 24, 4, east_m=21)) == ["d1"]  # east counts too


def test_a_ping_not_newer_than_the_written_one_is_skipped_even_far_away() -> None:
    f = PositionFilter(min_move_m=20, refresh_ms=10_000, clock_ms=Clock())
    written(f, "sf", ping("d1", 0, 10))
    assert written(f, "sf", ping("d1", 500, 9)) == []


def test_markets_are_remembered_apart() -> None:
    f = PositionFilter(min_move_m=20, refresh_ms=10_000, clock_ms=Clock())
    written(f, "sf", ping("d1", 0, 1))
    assert written(f, "nyc", ping("d1", 0, 2)) == ["d1"]


def test_drivers_not_written_for_the_refresh_interval_are_forgotten() -> None:
    clock = Clock()
    f = PositionFilter(min_move_m=20, refresh_ms=10_000, clock_ms=clock)
    written(f, "sf", *(ping(f"d{i}", 0, 1) for i in range(100)))
    clock.ms += 10_001
    assert written(f, "sf", ping("d0", 0, 2)) == ["d0"]
    assert len(f._written) == 1  # the 99 silent drivers no longer take memory


def test_a_written_driver_restamps_its_seen_time_only_once_the_step_has_passed() -> None:
    clock = Clock()
    f = PositionFilter(min_move_m=20, refresh_ms=10_000, clock_ms=clock)
    assert f.seen_step_ms == 5_000
    stamp, keep = f.select("sf", [ping("d1", 0, 1), ping("d2", 0, 1)])
    assert (ids(list(stamp)), keep) == (["d1", "d2"], [])  # never stamped by this process
    f.wrote("sf", stamp, len(stamp))
    clock.ms += 4_000  # the next ping of each, 30 m on: written, but the stamp is 4 s old
    stamp, keep = f.select("sf", [ping("d1", 30, 2), ping("d2", 30, 2)])
    assert (stamp, ids(list(keep))) == ([], ["d1", "d2"])
    f.wrote("sf", keep, 0)
    clock.ms += 1_000  # 5 s since the stamp (not since the last write): due again
    stamp, keep = f.select("sf", [ping("d1", 60, 3), ping("d2", 60, 3)])
    assert (ids(list(stamp)), keep) == (["d1", "d2"], [])
    f.wrote("sf", stamp[:1], 1)  # only d1's stamp was written this time
    clock.ms += 1_000
    stamp, keep = f.select("sf", [ping("d1", 90, 4), ping("d2", 90, 4)])
    assert (ids(list(stamp)), ids(list(keep))) == (["d2"], ["d1"])


def test_a_ping_skipped_as_near_supersedes_an_older_one_of_a_batch_that_finishes_later() -> None:
    # two batches in flight finish in either order: here the newer one is filtered first
    f = PositionFilter(min_move_m=20, refresh_ms=10_000, clock_ms=Clock())
    written(f, "sf", ping("d1", 0, 1))
    assert written(f, "sf", ping("d1", 10, 3)) == []  # the newest ping, 10 m on: skipped
    # the older batch's ping, 900 m away: written, it would leave the index there, 890 m from
    # the newest ping (seen: matching-geo after a flood)
    assert written(f, "sf", ping("d1", 900, 2)) == []


class HeldIndex:
    """update_positions.lua's rule (a ping newer than the stored one wins) applied when the reply
    comes back, which `hold` delays: a script in flight. Holds the ts stored per driver."""

    def __init__(self) -> None:
        self.stored: dict[str, int] = {}
        self.hold = asyncio.Event()
        self.hold.set()
        self.waiting = 0  # scripts sent and not answered
        self.fail = False

    def register_script(self, source: str) -> Any:
        return self.script

    async def script(self, keys: list[str], args: list[Any]) -> int:
        self.waiting += 1
        await self.hold.wait()
        self.waiting -= 1
        if self.fail:
            raise ConnectionError("the server went away")
        moved = 0
        for driver_id, ts, _ in zip(*[iter(args[1:])] * 3, strict=True):
            if ts > self.stored.get(driver_id, -1):
                self.stored[driver_id] = ts
                moved += 1
        return moved


def held_index() -> tuple[HeldIndex, aioredis.Redis, MarketKeys, PositionFilter]:
    index = HeldIndex()
    f = PositionFilter(min_move_m=20, refresh_ms=10_000, clock_ms=Clock())
    return index, cast(aioredis.Redis, index), MarketKeys("sf", "t"), f


async def test_a_driver_with_a_write_in_flight_is_not_skipped_as_near() -> None:
    index, redis, keys, f = held_index()
    await update_positions(redis, keys, [ping("d1", 0, 1)], f)
    index.hold.clear()
    older = asyncio.create_task(update_positions(redis, keys, [ping("d1", 900, 2)], f))
    newer = asyncio.create_task(update_positions(redis, keys, [ping("d1", 10, 3)], f))
    await asyncio.sleep(0)
    # both scripts in flight at once (batches do not take turns); the newer ping was not
    # skipped as 10 m from the 0 m remembered, which the older write is about to replace
    assert index.waiting == 2
    index.hold.set()
    await asyncio.gather(older, newer)
    assert index.stored == {"d1": 3}  # not left at the older ping, 890 m from the newest
    # what is remembered is the newest ping, whichever write answered last
    assert written(f, "sf", ping("d1", 15, 4)) == []


async def test_a_failed_write_leaves_no_driver_in_flight() -> None:
    index, redis, keys, f = held_index()
    await update_positions(redis, keys, [ping("d1", 0, 1)], f)
    index.fail = True
    with pytest.raises(ConnectionError):
        await update_positions(redis, keys, [ping("d1", 900, 2)], f)
    index.fail = False
    await update_positions(redis, keys, [ping("d1", 10, 3)], f)  # near 0 m: skipped again
    assert index.stored == {"d1": 1}
    assert f.skipped == 1


def test_geo_min_move_0_writes_every_ping() -> None:
    """README: `RIDEPULSE_GEO_MIN_MOVE_M` "0 writes every ping": matching-geo runs no filter."""
    assert geo_filter(Settings(geo_min_move_m=0)) is None
    kept = geo_filter(Settings(geo_min_move_m=20, driver_stale_s=30))
    assert kept is not None and (kept.min_move_m, kept.refresh_ms) == (20, 10_000)
