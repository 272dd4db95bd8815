"""`ridepulse status` reads streams, groups and heartbeats, and exits 1 when unhealthy."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from typer.testing import CliRunner

from ridepulse.cli import app
from ridepulse.keys import GlobalKeys, MarketKeys
from ridepulse.redis_client import connect
from ridepulse.redis_server import EmbeddedRedis
from ridepulse.retention import prune_heartbeats
from ridepulse.settings import Settings
from ridepulse.status import LAG_UNHEALTHY
from tests.support.bus import expired_events, fill
from tests.support.refusals import refusing_writes

pytestmark = pytest.mark.integration


def _status(settings: Settings) -> tuple[int, dict[str, Any]]:
    env = {
        "RIDEPULSE_REDIS_URL": settings.redis_url or "",
        "RIDEPULSE_KEY_PREFIX": settings.key_prefix,
    }
    result = CliRunner().invoke(app, ["status", "--json"], env=env)
    return result.exit_code, orjson.loads(result.stdout)


async def test_status_reports_streams_groups_and_live_services(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys, global_keys = MarketKeys("sf", settings.key_prefix), GlobalKeys(settings.key_prefix)
    await fill(redis, keys.rides, expired_events(10))
    await redis.xgroup_create(keys.rides, "matching", id="0")
    beat = {"processed": 7, "lag": 10, "pending": 0, "time": 0}
    await redis.set(global_keys.heartbeat("matching", "m-1"), orjson.dumps(beat), ex=30)
    await redis.sadd(global_keys.heartbeats, global_keys.heartbeat("matching", "m-1"))
    code, report = _status(settings)
    assert code == 0, report
    streams = {s["key"]: s for s in report["streams"]}
    assert streams[keys.rides]["length"] == 10
    assert streams[keys.rides]["groups"][0] == {
        "name": "matching",
        "consumers": 0,
        "pending": 0,
        "lag": 10,
    }
    assert report["services"][0]["processed"] == 7


async def test_status_reports_every_market_the_server_holds_not_only_the_configured_one(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """`ridepulse up --markets sf,nyc`, then a plain `ridepulse status` in another shell (no
    RIDEPULSE_MARKETS, so sf alone is configured): nyc's streams and groups are listed too, and
    only this deployment's (other tests' prefixes share the server)."""
    sf, nyc = MarketKeys("sf", settings.key_prefix), MarketKeys("nyc", settings.key_prefix)
    for keys in (sf, nyc):
        await redis.xgroup_create(keys.rides, "matching", id="$", mkstream=True)
    await redis.xgroup_create(nyc.telemetry, "matching.geo", id="$", mkstream=True)
    await fill(redis, nyc.rides, expired_events(3))
    await redis.xgroup_create(MarketKeys("la", "other").rides, "g", id="$", mkstream=True)
    try:
        code, report = _status(settings)
    finally:
        await redis.delete(MarketKeys("la", "other").rides)
    assert code == 0, report
    streams = {s["key"]: s for s in report["streams"]}
    assert list(streams) == [sf.rides, nyc.telemetry, nyc.rides], list(streams)
    assert streams[nyc.rides]["length"] == 3
    assert [g["name"] for g in streams[nyc.telemetry]["groups"]] == ["matching.geo"]


async def test_status_exits_1_when_a_service_heartbeat_is_gone(
    redis: aioredis.Redis, settings: Settings
) -> None:
    global_keys = GlobalKeys(settings.key_prefix)
    await redis.sadd(global_keys.heartbeats, global_keys.heartbeat("eta", "eta-1"))
    code, report = _status(settings)
    assert code == 1
    assert report["healthy"] is False
    assert "service eta (eta-1) has no live heartbeat" in report["problems"]


async def test_status_exits_1_when_nothing_is_under_its_prefix(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """A prefix typo (RIDEPULSE_KEY_PREFIX=other beside a running platform) or a server no
    platform ever ran on showed empty tables, "healthy", exit 0: monitoring passed on nothing."""
    keys, gk = MarketKeys("sf", settings.key_prefix), GlobalKeys(settings.key_prefix)
    await redis.xgroup_create(keys.rides, "matching", id="$", mkstream=True)
    await redis.set(
        gk.heartbeat("matching", "m-1"),
        orjson.dumps({"processed": 0, "lag": 0, "pending": 0, "time": 0}),
        ex=60,
    )
    await redis.sadd(gk.heartbeats, gk.heartbeat("matching", "m-1"))
    assert _status(settings)[0] == 0  # the platform under its own prefix is healthy

    typo = settings.model_copy(update={"key_prefix": settings.key_prefix + "x"})
    code, report = _status(typo)
    assert code == 1, report
    assert report["problems"] == [
        f"nothing under prefix '{typo.key_prefix}': no platform has run here, "
        "or the prefix is wrong (RIDEPULSE_KEY_PREFIX)"
    ], report
    env = {"RIDEPULSE_REDIS_URL": settings.redis_url or "", "RIDEPULSE_KEY_PREFIX": "x"}
    text = CliRunner().invoke(app, ["status"], env=env).stdout
    assert "UNHEALTHY: nothing under prefix 'x'" in text and "healthy\n" not in text, text


async def test_a_dead_replica_is_listed_without_failing_while_another_of_its_service_beats(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """operations.md: a replica that died while another of its service beats on is listed as
    dead without failing the check (its group's entries are claimed by the live one)."""
    gk = GlobalKeys(settings.key_prefix)
    beat = orjson.dumps({"processed": 3, "lag": 0, "pending": 0, "time": 0})
    alive, dead = gk.heartbeat("matching", "m-1"), gk.heartbeat("matching", "m-2")
    await redis.set(alive, beat, ex=60)
    await redis.sadd(gk.heartbeats, alive, dead)
    code, report = _status(settings)
    assert code == 0, report
    listed = {(s["service"], s["consumer"]): s["alive"] for s in report["services"]}
    assert listed == {("matching", "m-1"): True, ("matching", "m-2"): False}, listed
    await redis.delete(alive)  # now no consumer of matching beats: that fails the check
    code, report = _status(settings)
    assert code == 1, report
    assert "service matching (m-2) has no live heartbeat" in report["problems"], report


async def test_a_dead_consumers_figures_are_unknown_not_zero(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """A consumer whose heartbeat key expired was listed as processed 0, lag 0, pending 0 while
    its last beat said processed 1135 and its group had a backlog: made-up zeros. Its figures
    are unknown now: null in the JSON, "?" in the table."""
    gk = GlobalKeys(settings.key_prefix)
    await redis.sadd(gk.heartbeats, gk.heartbeat("matching", "m-1"))  # its key expired
    code, report = _status(settings)
    assert code == 1, report
    (dead,) = report["services"]
    figures = {name: dead[name] for name in ("processed", "lag", "pending")}
    assert figures == {"processed": None, "lag": None, "pending": None}, dead
    env = {
        "RIDEPULSE_REDIS_URL": settings.redis_url or "",
        "RIDEPULSE_KEY_PREFIX": settings.key_prefix,
    }
    table = CliRunner().invoke(app, ["status"], env=env).stdout
    (row,) = [line for line in table.splitlines() if line.startswith("matching ")]
    assert row.split()[2:] == ["?", "?", "?", "dead"], table


async def test_a_service_that_stays_dead_is_still_reported_after_the_janitor_prunes(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """The janitor forgets consumers gone for long, but not the last one of a service with no
    live consumer: under compose or `ridepulse run` nothing restarts a dead service, and status
    must not turn healthy a minute later. A restarted consumer's old name still goes."""
    gk = GlobalKeys(settings.key_prefix)
    beat = orjson.dumps({"processed": 0, "lag": 0, "pending": 0, "time": 0})
    eta_first, eta_last = gk.heartbeat("eta", "eta-1"), gk.heartbeat("eta", "eta-2")
    matching_old, matching_new = gk.heartbeat("matching", "m-1"), gk.heartbeat("matching", "m-2")
    await redis.set(matching_new, beat, ex=60)
    await redis.sadd(gk.heartbeats, eta_first, matching_old, matching_new)
    absent: dict[bytes, float] = {}
    assert await prune_heartbeats(redis, gk, absent, 100.0, prune_after_s=5) == 0
    await redis.sadd(gk.heartbeats, eta_last)  # a second eta came, beat, and died too
    assert await prune_heartbeats(redis, gk, absent, 101.0, prune_after_s=5) == 0
    assert await prune_heartbeats(redis, gk, absent, 200.0, prune_after_s=5) == 2

    names = cast(set[bytes], await redis.smembers(gk.heartbeats))
    assert names == {eta_last.encode(), matching_new.encode()}
    code, report = _status(settings)
    assert code == 1, report
    assert report["problems"] == ["service eta (eta-2) has no live heartbeat"]
    assert await prune_heartbeats(redis, gk, absent, 300.0, prune_after_s=5) == 0

    await redis.set(gk.heartbeat("eta", "eta-3"), beat, ex=60)  # eta is back
    await redis.sadd(gk.heartbeats, gk.heartbeat("eta", "eta-3"))
    assert await prune_heartbeats(redis, gk, absent, 301.0, prune_after_s=5) == 1
    assert _status(settings)[0] == 0


async def _append(redis: aioredis.Redis, stream: str, count: int, chunk: int = 10_000) -> None:
    """`count` tiny entries, pipelined a chunk at a time."""
    for start in range(0, count, chunk):
        pipe = redis.pipeline(transaction=False)
        for _ in range(min(chunk, count - start)):
            pipe.xadd(stream, {"x": "1"})
        await pipe.execute()


async def test_status_exits_1_once_a_group_lags_more_than_100_000_entries(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """docs/operations.md: exit 1 when a group lags more than 100,000 entries; exactly
    100,000 is still healthy. A live heartbeat is present, so only the lag can fail it."""
    keys, global_keys = MarketKeys("sf", settings.key_prefix), GlobalKeys(settings.key_prefix)
    beat = {"processed": 0, "lag": 0, "pending": 0, "time": 0}
    await redis.set(global_keys.heartbeat("matching", "m-1"), orjson.dumps(beat), ex=120)
    await redis.sadd(global_keys.heartbeats, global_keys.heartbeat("matching", "m-1"))
    await redis.xgroup_create(keys.rides, "matching", id="$", mkstream=True)
    try:
        await _append(redis, keys.rides, LAG_UNHEALTHY)
        code, report = _status(settings)
        (group,) = {s["key"]: s for s in report["streams"]}[keys.rides]["groups"]
        assert group["lag"] == LAG_UNHEALTHY == 100_000, group
        assert (code, report["healthy"], report["problems"]) == (0, True, []), report

        await _append(redis, keys.rides, 1)
        code, report = _status(settings)
        assert code == 1, report
        assert report["healthy"] is False
        assert report["problems"] == [f"group matching on {keys.rides} lags 100001 entries"]
    finally:
        await redis.delete(keys.rides)  # 100,001 entries: not left in the session's server


async def test_a_server_at_its_maxmemory_is_named_as_the_cause_not_the_services(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """A Valkey past its maxmemory refuses every write, heartbeats too: status said every
    service was dead (go restart them) and nothing of memory. It now names the server first."""
    gk = GlobalKeys(settings.key_prefix)
    await redis.sadd(gk.heartbeats, gk.heartbeat("eta", "eta-1"))  # its beat refused: expired
    await redis.config_set("maxmemory", 1)  # below what it holds: full from now on
    try:
        refused = await _refused_write(redis, gk)
        code, report = _status(settings)
    finally:
        await redis.config_set("maxmemory", 0)
    assert refused, "the server accepted a write past its maxmemory: the test proves nothing"
    assert code == 1 and report["writes_refused"] is True, report
    assert report["problems"][0].startswith("Redis is at its maxmemory ("), report["problems"]
    assert report["problems"][1] == (
        "service eta (eta-1) has no live heartbeat (Redis refuses its heartbeat: see memory)"
    )
    assert _status(settings)[1]["writes_refused"] is False


@pytest.mark.parametrize(
    ("code", "named", "cause"),
    [
        ("MISCONF", "Redis failed its last RDB snapshot: it refuses every write (MISCONF)", "disk"),
        (
            "NOREPLICAS",
            "Redis has 0 good replica(s) of the 1 its min-replicas-to-write asks for: it refuses "
            "every write (NOREPLICAS)",
            "replicas",
        ),
    ],
)
async def test_a_server_refusing_writes_is_named_as_the_cause_not_the_services(
    tmp_path: Path, code: str, named: str, cause: str
) -> None:
    """A Valkey that cannot write to its disk (a full AOF disk, a failed snapshot) answers every
    write with MISCONF, one short of the replicas its min-replicas-to-write asks for with
    NOREPLICAS; heartbeats too: status listed every service dead and never said why."""
    server = EmbeddedRedis(tmp_path / "valkey").start()  # its own: CONFIG SET save, a bgsave
    settings = Settings(redis_url=server.url, key_prefix="t", data_dir=tmp_path)
    client = connect(settings)
    try:
        gk = GlobalKeys(settings.key_prefix)
        await client.sadd(gk.heartbeats, gk.heartbeat("eta", "eta-1"))  # its beat refused
        async with refusing_writes(client, code):
            with pytest.raises(ResponseError, match=f"^{code} "):
                await client.set(gk.heartbeat("eta", "eta-1"), b"{}")
            status_code, report = _status(settings)
        assert status_code == 1 and report["writes_refused"] is True, report
        assert report["problems"][0].startswith(named), report["problems"]
        assert report["problems"][1] == (
            f"service eta (eta-1) has no live heartbeat (Redis refuses its heartbeat: see {cause})"
        )
        assert _status(settings)[1]["writes_refused"] is False
    finally:
        await client.aclose()
        server.stop()


async def _refused_write(redis: aioredis.Redis, gk: GlobalKeys) -> bool:
    try:
        await redis.set(gk.heartbeat("eta", "eta-1"), b"{}")
    except ResponseError as exc:
        return "maxmemory" in str(exc)
    return False
