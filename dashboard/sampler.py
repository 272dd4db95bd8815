"""Fixed-rate samples, never per event: driver positions and statuses (2 Hz while someone
watches, every few seconds otherwise), and once a second the stream rates, consumer lag per
group, heartbeats and the dead-letter count."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis

from dashboard.metrics import DRIVER_SAMPLES
from dashboard.ride_view import text_hash
from dashboard.state import CityState
from ridepulse.contracts.envelope import now_ms
from ridepulse.keys import GlobalKeys, MarketKeys, heartbeat_owner
from ridepulse.replies import text

LAG_STREAMS = ("telemetry", "rides")  # consumer lag per group is charted for these streams


class Sampler:
    def __init__(
        self, redis: aioredis.Redis, state: CityState, keys: MarketKeys, global_keys: GlobalKeys
    ) -> None:
        self.redis = redis
        self.state = state
        self.keys = keys
        self.global_keys = global_keys
        self._added: dict[str, tuple[int, int]] = {}  # stream → (entries-added, at ms)

    async def drivers(self) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.positions)
        pipe.hgetall(self.keys.driver_statuses)
        positions, statuses = await pipe.execute()
        self.state.set_drivers(text_hash(positions), text_hash(statuses))
        DRIVER_SAMPLES.inc()

    async def metrics(self) -> None:
        streams = {"telemetry": self.keys.telemetry, "rides": self.keys.rides}
        pipe = self.redis.pipeline(transaction=False)
        for key in streams.values():
            pipe.xinfo_stream(key)
        for name in LAG_STREAMS:
            pipe.xinfo_groups(streams[name])
        pipe.smembers(self.global_keys.heartbeats)
        pipe.xlen(self.global_keys.dead_letters)
        replies = await pipe.execute(raise_on_error=False)  # a missing stream is an error reply
        now = now_ms()
        rates = {
            name: self._rate(key, replies[i], now) for i, (name, key) in enumerate(streams.items())
        }
        lag: dict[str, int | None] = {}
        for name, groups in zip(LAG_STREAMS, replies[2:4], strict=True):
            for group in groups if isinstance(groups, list) else []:
                lag[f"{text(group['name'])} · {name}"] = group.get("lag")
        members = sorted(text(m) for m in replies[4])
        values: Any = await self._get_each(members)
        self.state.sync_heartbeats(
            dict(_heartbeat(m, v) for m, v in zip(members, values, strict=True))
        )
        self.state.set_dead_letters(int(replies[5]) if isinstance(replies[5], int) else 0)
        point = {
            "t": now,
            "telemetry_per_s": rates["telemetry"],
            "ride_events_per_s": rates["rides"],
        }
        self.state.add_series_point({**point, "lag": lag})

    async def _get_each(self, keys: list[str]) -> list[Any]:
        """GET per key in one pipeline: the heartbeat keys hash to many slots, and one MGET
        across slots fails on a cluster (the cluster client splits a pipeline by node)."""
        if not keys:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        return list(await pipe.execute())

    def _rate(self, key: str, info: Any, now: int) -> float | None:
        """Entries appended per second since the previous sample (XINFO STREAM entries-added);
        0 for a stream that does not exist yet, None for the first sample."""
        added = int(info.get("entries-added") or 0) if isinstance(info, dict) else 0
        previous = self._added.get(key)
        self._added[key] = (added, now)
        if previous is None or now <= previous[1]:
            return None
        return round(max(0, added - previous[0]) * 1000 / (now - previous[1]), 1)


def _heartbeat(member: str, raw: bytes | None) -> tuple[tuple[str, str], Mapping[str, Any] | None]:
    """A heartbeat key `<prefix>:heartbeat:<service>:<consumer>` and its JSON value."""
    service, consumer = heartbeat_owner(member)
    if raw is None:
        return (service, consumer), None
    try:
        beat = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return (service, consumer), None
    return (str(beat.get("service", service)), str(beat.get("consumer", consumer))), beat
