"""A Redis that refuses ingest's writes is named where an operator looks: ingest's /readyz
answers 503 with the reason (it said 200 "ready" while every ride request got 503), its
/metrics counts the refused requests by reason, `ridepulse status` exits 1 naming an AOF that is
off, and `ridepulse run ingest` refuses to start on a server whose AOF is off (it came up and
answered every ride request 503 `not_durable`). Each against a Valkey of the test's own,
reconfigured with CONFIG SET as an operator would."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs
from typer.testing import CliRunner

from ingest.routes_health import REPORTED_GROUPS
from ingest.write_refusal_watch import WriteRefusalWatch, refuse_start_without_aof
from loadtests.platform import clean_env
from ridepulse.cli import app as cli
from ridepulse.cluster import LocalCluster
from ridepulse.errors import CannotStart
from ridepulse.redis_client import connect
from ridepulse.redis_server import EmbeddedRedis, free_port
from ridepulse.settings import Settings
from ridepulse.write_refusals import node_refusals
from tests.support.ingest import SF_TRIP, Ingest, start
from tests.support.processes import RIDEPULSE
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

SECRET = "test-secret-not-for-production-0123456789"
AOF_OFF = "has its AOF off (appendonly no) while RIDEPULSE_DURABLE_WRITES is on"
AT_MAXMEMORY = "is at its maxmemory"
NO_REPLICAS = "has 0 good replica(s) of the 1 its min-replicas-to-write asks for"
# The CONFIG SET that makes the server refuse writes, and the one that undoes it
AOF_TURNED_OFF = (("appendonly", "no"), ("appendonly", "yes"))
MAXMEMORY_REACHED = (("maxmemory", "1"), ("maxmemory", "0"))
REPLICAS_MISSING = (("min-replicas-to-write", "1"), ("min-replicas-to-write", "0"))


@pytest.fixture
def own_settings(own_server: EmbeddedRedis, tmp_path: Path) -> Settings:
    """The operator's settings (the `default` user), under the server's key prefix."""
    return Settings(
        redis_url=own_server.url, key_prefix="rp", data_dir=tmp_path / "data", secret=SECRET
    )


@pytest.fixture
async def operator(own_settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = connect(own_settings)
    yield client
    await client.aclose()


@pytest.fixture
async def ingest(
    own_server: EmbeddedRedis, own_settings: Settings, operator: aioredis.Redis
) -> AsyncIterator[Ingest]:
    """Ingest as `ridepulse up` runs it: its own ACL user, which may read three INFO sections
    and no CONFIG."""
    as_ingest = own_settings.model_copy(update={"redis_url": own_server.url_for("ingest")})
    async with start(as_ingest) as running:
        for market in running.deps.markets.markets:  # what matching, eta, pricing declare
            for group in REPORTED_GROUPS:
                stream = running.deps.keys(market.id).rides
                await operator.xgroup_create(stream, group, id="0", mkstream=True)
        yield running


async def _readyz_until(ingest: Ingest, status: int, what: str) -> httpx.Response:
    async def answered() -> httpx.Response | None:
        response = await ingest.http.get("/readyz")
        return response if response.status_code == status else None

    return await wait_until(answered, timeout_s=10, what=what)


async def _refused_total(ingest: Ingest, reason: str) -> float:
    text = (await ingest.http.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        if family.name == "rp_redis_writes_refused":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels == {"reason": reason}:
                    return sample.value
    return 0.0


@pytest.mark.parametrize(
    ("refuse", "accept", "named"),
    [
        (*MAXMEMORY_REACHED, AT_MAXMEMORY),
        (*REPLICAS_MISSING, NO_REPLICAS),
    ],
    ids=["maxmemory", "noreplicas"],
)
async def test_readyz_is_503_naming_why_redis_refuses_writes_and_200_once_undone(
    ingest: Ingest,
    operator: aioredis.Redis,
    refuse: tuple[str, str],
    accept: tuple[str, str],
    named: str,
) -> None:
    ready = await ingest.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    await operator.config_set(*refuse)
    try:
        refused = await _readyz_until(ingest, 503, f"/readyz 503 after CONFIG SET {refuse}")
        body = refused.json()
        assert body["status"] == "waiting", body
        (problem,) = body["writes_refused"]
        assert named in problem, body
        assert refused.headers.get("retry-after") == "1", refused.headers
        assert await operator.acl_log() == [], "ingest's user was refused a command"
    finally:
        await operator.config_set(*accept)
    again = await _readyz_until(ingest, 200, f"/readyz 200 after CONFIG SET {accept}")
    assert "writes_refused" not in again.json(), again.json()


async def test_an_aof_off_is_listed_by_readyz_which_stays_200(
    ingest: Ingest, operator: aioredis.Redis
) -> None:
    """An AOF off fails durable ride requests only: pings, quotes and sockets work, so ingest
    stays in rotation (it was a 503) and names it under writes_refused."""
    await operator.config_set("appendonly", "no")
    try:

        async def listed() -> httpx.Response | None:
            response = await ingest.http.get("/readyz")
            return response if "writes_refused" in response.json() else None

        ready = await wait_until(listed, timeout_s=10, what="/readyz listing the AOF off")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ready", ready.json()
        (problem,) = ready.json()["writes_refused"]
        assert AOF_OFF in problem, problem
    finally:
        await operator.config_set("appendonly", "yes")


async def test_ingest_whose_user_may_not_read_info_starts_and_warns_once(
    own_server: EmbeddedRedis, ingest: Ingest, operator: aioredis.Redis
) -> None:
    """After an upgrade a Valkey keeps its old ACL file until restarted: ingest's user lacks
    the INFO grants, and `run ingest` exited 'NOPERM' and crash-looped. The verdict is now
    unknown: start-up goes on (with the AOF on or off), /readyz stays 200, one warning names
    the fix."""
    as_ingest = Settings(
        redis_url=own_server.url_for("ingest"), key_prefix="rp", data_dir=Path("."), secret=SECRET
    )
    await operator.acl_setuser("ingest", enabled=True, commands=["-info"])
    try:
        await asyncio.to_thread(refuse_start_without_aof, as_ingest)  # raised NOPERM
        await operator.config_set("appendonly", "no")
        await asyncio.to_thread(refuse_start_without_aof, as_ingest)  # unknown is not off
        # a watch of its own: the running one's background pass may have warned already
        watch = WriteRefusalWatch(ingest.deps.redis, durable_writes=True)
        with capture_logs() as logs:
            for _ in range(3):
                await watch.check()
        warned = [e for e in logs if e["event"] == "ingest.refusal_check_unavailable"]
        assert len(warned) == 1, logs
        assert "NoPermissionError" in warned[0]["error"] and "ACL LOAD" in warned[0]["fix"], warned
        ready = await ingest.http.get("/readyz")
        assert ready.status_code == 200, ready.text
    finally:
        await operator.config_set("appendonly", "yes")
        grants = ["+info|persistence", "+info|memory", "+info|replication"]
        await operator.acl_setuser("ingest", enabled=True, commands=grants)


async def test_a_memory_refusal_is_named_only_under_a_policy_that_refuses(
    operator: aioredis.Redis,
) -> None:
    """Under allkeys-* a server at its maxmemory evicts a key and takes the write: no refusal.
    Under noeviction and volatile-* (the streams have no TTL to evict) it refuses."""
    await operator.config_set("maxmemory", "1")
    try:
        for policy, refused in [
            ("allkeys-lru", False),
            ("allkeys-random", False),
            ("volatile-lru", True),
            ("noeviction", True),
        ]:
            await operator.config_set("maxmemory-policy", policy)
            verdicts = await node_refusals(operator, durable_writes=True)
            causes = [cause for cause, _ in verdicts.refusals]
            assert causes == (["memory"] if refused else []), (policy, verdicts)
            assert verdicts.every_primary_refuses is refused, policy
    finally:
        await operator.config_set("maxmemory", "0")
        await operator.config_set("maxmemory-policy", "noeviction")


@pytest.mark.parametrize(
    ("refuse", "accept", "reason"),
    [
        (*AOF_TURNED_OFF, "aof"),
        (*MAXMEMORY_REACHED, "memory"),
        (*REPLICAS_MISSING, "replicas"),
    ],
    ids=["aof-off", "maxmemory", "noreplicas"],
)
async def test_a_ride_request_redis_refused_is_counted_by_reason_on_metrics(
    ingest: Ingest,
    operator: aioredis.Redis,
    refuse: tuple[str, str],
    accept: tuple[str, str],
    reason: str,
) -> None:
    before = await _refused_total(ingest, reason)
    await operator.config_set(*refuse)
    try:
        answer = await ingest.request_ride("alice", SF_TRIP, f"k-{reason}")
    finally:
        await operator.config_set(*accept)
    assert answer.status_code == 503, answer.text
    assert await _refused_total(ingest, reason) == before + 1


async def test_status_exits_1_naming_an_aof_that_is_off_while_durable_writes_are_on(
    own_settings: Settings, operator: aioredis.Redis
) -> None:
    env = {"RIDEPULSE_REDIS_URL": own_settings.redis_url or "", "RIDEPULSE_KEY_PREFIX": "rp"}
    await operator.xgroup_create("rp:{sf}:rides", "matching", id="$", mkstream=True)
    healthy = CliRunner().invoke(cli, ["status"], env=env)
    assert healthy.exit_code == 0, healthy.stdout
    await operator.config_set("appendonly", "no")
    result = CliRunner().invoke(cli, ["status"], env=env)
    assert result.exit_code == 1, result.stdout
    assert f"UNHEALTHY: Redis {AOF_OFF}" in result.stdout, result.stdout
    as_json = CliRunner().invoke(cli, ["status", "--json"], env=env)
    report = orjson.loads(as_json.stdout)
    # an AOF off refuses durable ride requests, not every write (it said true)
    assert report["writes_refused"] is False, report
    assert report["healthy"] is False, report
    # a server run deliberately without AOF: nothing to name
    memory_only = CliRunner().invoke(
        cli, ["status"], env={**env, "RIDEPULSE_DURABLE_WRITES": "false"}
    )
    assert memory_only.exit_code == 0, memory_only.stdout


@pytest.mark.parametrize(("ingest_durable", "shell_durable"), [(False, "true"), (True, "false")])
async def test_status_judges_an_aof_off_by_the_running_ingests_durable_writes(
    own_server: EmbeddedRedis,
    own_settings: Settings,
    operator: aioredis.Redis,
    ingest_durable: bool,
    shell_durable: str,
) -> None:
    """`RIDEPULSE_DURABLE_WRITES=false ridepulse up` then `ridepulse status` in another shell
    exited 1 "AOF off": status took the shell's setting. The live ingest's heartbeat tells."""
    as_ingest = own_settings.model_copy(
        update={"redis_url": own_server.url_for("ingest"), "durable_writes": ingest_durable}
    )
    await operator.xgroup_create("rp:{sf}:rides", "matching", id="$", mkstream=True)
    await operator.config_set("appendonly", "no")
    try:
        async with start(as_ingest):

            async def beat() -> bool:
                return bool(await operator.keys("rp:heartbeat:ingest:*"))

            await wait_until(beat, timeout_s=10, what="ingest's heartbeat")
            env = {
                "RIDEPULSE_REDIS_URL": own_settings.redis_url or "",
                "RIDEPULSE_KEY_PREFIX": "rp",
                "RIDEPULSE_DURABLE_WRITES": shell_durable,
            }
            result = CliRunner().invoke(cli, ["status"], env=env)
    finally:
        await operator.config_set("appendonly", "yes")
    assert result.exit_code == (1 if ingest_durable else 0), result.stdout
    assert (AOF_OFF in result.stdout) is ingest_durable, result.stdout


def test_run_ingest_refuses_to_start_on_a_server_whose_aof_is_off(
    own_server: EmbeddedRedis, tmp_path: Path
) -> None:
    with redis.Redis.from_url(own_server.url) as operator:
        operator.config_set("appendonly", "no")
    env = clean_env(
        RIDEPULSE_REDIS_URL=own_server.url,
        RIDEPULSE_DATA_DIR=str(tmp_path / "cli"),
        RIDEPULSE_API_PORT=str(free_port()),
        RIDEPULSE_METRICS_PORT="0",
        RIDEPULSE_SECRET=SECRET,
        RIDEPULSE_LOG_FORMAT="json",
    )
    started = time.monotonic()
    result = subprocess.run(
        [str(RIDEPULSE), "run", "ingest"], capture_output=True, text=True, timeout=60, env=env
    )
    took_s = time.monotonic() - started
    assert result.returncode == 1, (result.stdout, result.stderr[-2000:])
    assert result.stderr.strip().splitlines() == [
        f"error: ingest cannot start: Redis {AOF_OFF}: it refuses WAITAOF, so every ride request "
        "gets 503 not_durable; turn the AOF on (CONFIG SET appendonly yes, and appendonly yes "
        "in its config file) or set RIDEPULSE_DURABLE_WRITES=false"
    ], result.stderr[-2000:]
    assert took_s < 15, f"took {took_s:.0f} s"


def test_up_on_a_server_whose_aof_is_off_fails_at_start_naming_it(
    own_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """`ridepulse up --redis-url` takes the server as it is: it printed "RidePulse is up" over a
    server that refused every durable ride request. It now ends at start with ingest's line."""
    with redis.Redis.from_url(own_server.url) as operator:
        operator.config_set("appendonly", "no")
    env = clean_env(RIDEPULSE_DATA_DIR=str(tmp_path / "up"), RIDEPULSE_METRICS_PORT="0")
    ports = ["--api-port", str(free_port()), "--dashboard-port", str(free_port())]
    started = time.monotonic()
    result = subprocess.run(
        [str(RIDEPULSE), "up", "--no-sim", "--redis-url", own_server.url, *ports],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )
    took_s = time.monotonic() - started
    assert result.returncode == 1, (result.stdout, result.stderr[-2000:])
    assert "RidePulse is up" not in result.stdout, result.stdout
    assert f"ingest cannot start: Redis {AOF_OFF}" in result.stderr, result.stderr[-2000:]
    assert took_s < 45, f"took {took_s:.0f} s: a timeout, not the reason"


async def test_on_a_cluster_each_primary_is_asked_and_the_one_with_its_aof_off_is_named(
    tmp_path: Path,
) -> None:
    """INFO goes to one node: the verdict asks every primary, as ingest's user, and names the
    node that refuses (the markets of its slots get 503 not_durable, the others go on)."""
    cluster = LocalCluster(tmp_path / "cluster", primaries=3, replicas=0).start()
    try:
        settings = Settings(redis_url=cluster.url_for("ingest"), key_prefix="rp", data_dir=tmp_path)
        client = connect(settings, for_requests=True)
        try:
            assert (await node_refusals(client, durable_writes=True)).refusals == []
            off = cluster.nodes[1]
            with redis.Redis.from_url(off.url) as operator:
                operator.config_set("appendonly", "no")
            ((cause, problem),) = (await node_refusals(client, durable_writes=True)).refusals
            assert cause == "aof", problem
            assert problem.startswith(f"Redis {off.address} {AOF_OFF}"), problem
            assert (await node_refusals(client, durable_writes=False)).refusals == []
        finally:
            await client.aclose()
    finally:
        cluster.stop()


async def test_on_a_cluster_readyz_blocks_only_when_every_primary_refuses_and_skips_one_down(
    tmp_path: Path,
) -> None:
    """One primary refusing fails its own markets: it made every ingest's /readyz a 503, so
    every market left rotation. Now it is listed and blocks only when every primary refuses.
    A primary down (cluster-require-full-coverage no: the others serve on) raised out of the
    check, so ingest could not start and the last verdict stayed frozen: it is now skipped."""
    cluster = LocalCluster(tmp_path / "cluster", primaries=3, replicas=0).start()
    try:
        settings = Settings(redis_url=cluster.url_for("ingest"), key_prefix="rp", data_dir=tmp_path)
        client = connect(settings, for_requests=True)
        watch = WriteRefusalWatch(client, durable_writes=True)
        try:
            for count, node in enumerate(cluster.nodes, start=1):
                with redis.Redis.from_url(node.url) as operator:
                    operator.config_set("maxmemory", "1")
                await watch.check()
                assert len(watch.problems) == count, watch.problems
                assert watch.blocks is (count == len(cluster.nodes)), (count, watch.problems)
            for node in cluster.nodes[:2]:
                with redis.Redis.from_url(node.url) as operator:
                    operator.config_set("maxmemory", "0")
                    operator.config_set("appendonly", "no")
            cluster.nodes[2].stop()  # the one at its maxmemory: down, not refusing
            await watch.check()  # raised ConnectionError, leaving the verdict as it was
            assert len(watch.problems) == 2, watch.problems
            assert all(AOF_OFF in problem for problem in watch.problems), watch.problems
            assert watch.blocks is False
            aof_settings = settings.model_copy(update={"durable_writes": True})
            with pytest.raises(CannotStart, match="AOF off"):
                await asyncio.to_thread(
                    refuse_start_without_aof, aof_settings
                )  # past the node down
        finally:
            await client.aclose()
    finally:
        cluster.stop()
