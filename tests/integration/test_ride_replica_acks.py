"""RIDEPULSE_RIDE_REPLICA_ACKS=1: the ride path's WAIT 1 on the pinned connection to the
market's primary, on a real local Valkey Cluster."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ingest.durability import make_durable, pinned, wait_for_replicas
from ridepulse.cluster import LocalCluster
from ridepulse.errors import NotDurable
from ridepulse.redis_client import connect
from ridepulse.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "rp:{sf}:replica-acks-probe"


async def write_then_wait(url: str, acks: int) -> None:
    redis = connect(Settings(redis_url=url), url)
    try:
        async with pinned(redis, KEY) as pin:
            await pin.execute("SET", KEY, "1")
            await wait_for_replicas(acks, 2000, pin)
    finally:
        await redis.aclose()


async def test_wait_1_passes_when_the_markets_primary_has_a_replica(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "c", primaries=3, replicas=1).start()
    try:
        await write_then_wait(cluster.url, acks=1)  # no NotDurable: the replica acked
    finally:
        cluster.stop()


async def test_wait_1_refuses_with_retry_after_when_no_replica_acks(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "c", primaries=3, replicas=0).start()
    try:
        await write_then_wait(cluster.url, acks=0)  # the default skips WAIT
        with pytest.raises(NotDurable) as refused:
            await write_then_wait(cluster.url, acks=1)
        assert refused.value.retry_after_s == 1
    finally:
        cluster.stop()


async def test_make_durable_sends_wait_only_when_replica_acks_is_set(tmp_path: Path) -> None:
    """The ride path's make_durable: WAITAOF then WAIT 1 when asked, on a primary with no
    replica, so the setting alone decides between 202 and 503."""
    cluster = LocalCluster(tmp_path / "c", primaries=3, replicas=0).start()
    base = Settings(redis_url=cluster.url, durable_timeout_ms=500)
    redis = connect(base, cluster.url)
    try:
        for acks, refused in ((0, False), (1, True)):
            deps: Any = SimpleNamespace(
                settings=base.model_copy(update={"ride_replica_acks": acks})
            )
            async with pinned(redis, KEY) as pin:
                await pin.execute("SET", KEY, str(acks))
                if refused:
                    with pytest.raises(NotDurable, match="0 of 1 replicas"):
                        await make_durable(deps, pin)
                else:
                    await make_durable(deps, pin)
    finally:
        await redis.aclose()
        cluster.stop()
