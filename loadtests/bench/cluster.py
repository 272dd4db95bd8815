"""The cluster figures (issue 12): failover on a 3-primary cluster with and without replica
acknowledgement, and the end-to-end load on a cluster next to one server.

    python -m loadtests.bench.cluster failover|e2e|all [--pairs 3] [--out docs]

Results go to docs/cluster-bench.json and the tables between the generated markers of
docs/scaling.md (prose outside them is written by hand). Pure accounting is in cluster_stats."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

from loadtests.bench import fleet, loadgen
from loadtests.bench.cluster_stats import Attempt, account_losses, no_202_s, render_into, silence_s
from loadtests.bench.e2e import prepare_fleet, running
from loadtests.bench.fleet import home_point, service_box
from loadtests.bench.machine import machine_info
from loadtests.bench.measure import say
from loadtests.bench.publish import command_line, publish
from loadtests.bench.ride_latency import request_to_offer_ms, ride_events
from loadtests.bench.samplers import GroupLag, sample_lag
from loadtests.bench.stats import percentile
from loadtests.platform import Platform
from ridepulse.auth import mint_token
from ridepulse.contracts.envelope import now_ms
from ridepulse.keys import MarketKeys
from ridepulse.pause import sleep_or_stop
from ridepulse.redis_client import connect, connect_sync
from ridepulse.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"
MARKETS = ("sf", "nyc")
# the e2e suite's fast clocks (tests/e2e/conftest.py): offers time out in 2 s, so open rides
# are re-offered continuously and an outage shows as a gap in `ride.offered`
FAST_CLOCKS = {
    "RIDEPULSE_OFFER_TIMEOUT_S": "2",
    "RIDEPULSE_RIDE_DEADLINE_S": "30",
    "RIDEPULSE_HEARTBEAT_INTERVAL_S": "1",
}
CLUSTER_ARGS = ("--cluster", "--primaries", "3", "--replicas", "1")


def ride_body(lat: float, lon: float) -> dict[str, Any]:
    """A ride from (lat, lon) to a point about 1.4 km north-east of it."""
    dropoff = {"lat": round(lat + 0.01, 6), "lon": round(lon + 0.01, 6)}
    return {"pickup": {"lat": lat, "lon": lon}, "dropoff": dropoff}


# ---- failover ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailoverConfig:
    drivers: int = 40
    rides_per_s: float = 3.0
    before_kill_s: float = 8.0  # steady load before the kill
    after_first_202_s: float = 8.0  # steady load once requests are acknowledged again
    outage_limit_s: float = 90.0
    burst: int = 40  # concurrent requests sent right at the kill
    burst_lead_s: float = 0.02  # the kill follows the burst's send by this much


def primary_port_of(url: str, market: str) -> int:
    client: Any = connect_sync(url)
    try:
        return int(client.get_node_from_key("{" + market + "}").port)
    finally:
        client.close()


def pid_listening_on(port: int) -> int:
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return int(conn.pid)
    raise RuntimeError(f"nothing listens on {port}")


class FailoverRun:
    """One run: a fresh cluster platform, steady rides in sf, a burst and a SIGKILL."""

    def __init__(self, cfg: FailoverConfig, acks: bool, work_dir: Path) -> None:
        self.cfg, self.acks = cfg, acks
        env = {**FAST_CLOCKS, "RIDEPULSE_RIDE_REPLICA_ACKS": "1" if acks else "0"}
        self.platform = Platform(
            work_dir, "--no-sim", "--markets", ",".join(MARKETS), *CLUSTER_ARGS, env=env
        )
        self.attempts: list[Attempt] = []
        self.offers: list[float] = []  # server time (s) of every ride.offered seen live
        self.rider = 0

    async def _call(
        self, method: str, path: str, role: str, subject: str, **kwargs: Any
    ) -> httpx.Response | None:
        """None when no answer came: the API may time out while its Redis fails over."""
        token = mint_token(self.secret, role, subject)
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        try:
            return await self.http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError:
            return None

    async def _request(self, burst: bool = False) -> None:
        self.rider += 1
        lat, lon = home_point(10_000 + self.rider, service_box(0.01, "sf"))
        key = {"Idempotency-Key": str(uuid.uuid4())}
        subject = f"fo-rider-{self.rider}"
        sent = time.time()
        response = await self._call(
            "POST", "/v1/rides", "rider", subject, json=ride_body(lat, lon), headers=key
        )
        status = 0 if response is None else response.status_code
        ride_id = response.json().get("ride_id") if response and status == 202 else None
        self.attempts.append(Attempt(sent, time.time(), status, ride_id, burst))

    async def _as_driver(self, i: int, method: str, what: str, body: dict[str, Any]) -> int:
        path, subject = f"/v1/drivers/fo-d{i}/{what}", f"fo-d{i}"
        response = await self._call(method, path, "driver", subject, json=body)
        return 0 if response is None else response.status_code

    async def _ping(self, i: int) -> int:
        lat, lon = home_point(i, service_box(0.01, "sf"))
        return await self._as_driver(
            i, "POST", "location", {"lat": lat, "lon": lon, "ts": now_ms()}
        )

    async def _steady(self, stop: asyncio.Event) -> None:
        sent: list[asyncio.Task[None]] = []
        while not stop.is_set():
            sent.append(asyncio.create_task(self._request()))
            await sleep_or_stop(stop, 1 / self.cfg.rides_per_s)
        await asyncio.gather(*sent)

    async def _pings(self, stop: asyncio.Event) -> None:
        """Every driver pings every 5 s, so none goes stale while the run lasts."""
        while not stop.is_set():
            await asyncio.gather(*(self._ping(i) for i in range(self.cfg.drivers)))
            await sleep_or_stop(stop, 5.0)

    async def _tail_offers(self, stop: asyncio.Event) -> None:
        """XREAD the sf ride stream live and note every offer's server time; errors while the
        primary is down are retried (the cluster client refreshes its slot map)."""
        stream, last = MarketKeys("sf").rides, "$"
        while not stop.is_set():
            try:
                reply: Any = await self.redis.xread({stream: last}, count=500, block=500)
            except Exception:  # any error while the primary is down: retry shortly
                await asyncio.sleep(0.2)
                continue
            for _name, entries in reply or []:
                for entry_id, fields in entries:
                    last = entry_id
                    if fields.get(b"type") == b"ride.offered":
                        self.offers.append(int(fields[b"time"]) / 1000)

    async def run(self) -> dict[str, Any]:
        async with running(self.platform):
            self.secret, self.url = self.platform.secret, self.platform.redis_url()
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
            self.http = httpx.AsyncClient(base_url=self.platform.api, timeout=15, limits=limits)
            async with connect(Settings(), self.url) as self.redis, self.http:
                return await self._measure()

    async def _measure(self) -> dict[str, Any]:
        cfg = self.cfg
        for i in range(cfg.drivers):
            assert await self._ping(i) == 202
            assert await self._as_driver(i, "PUT", "status", {"status": "available"}) == 200
        stop_load, stop_all = asyncio.Event(), asyncio.Event()
        watchers = [
            asyncio.create_task(w) for w in (self._tail_offers(stop_all), self._pings(stop_all))
        ]
        steady = asyncio.create_task(self._steady(stop_load))
        await asyncio.sleep(cfg.before_kill_s)

        victim = primary_port_of(self.url, "sf")
        burst = [asyncio.create_task(self._request(burst=True)) for _ in range(cfg.burst)]
        await asyncio.sleep(cfg.burst_lead_s)
        os.kill(pid_listening_on(victim), signal.SIGKILL)
        kill = time.time()
        say(f"SIGKILLed the primary of {{sf}} (port {victim}); acks {'on' if self.acks else 'off'}")

        while time.time() - kill < cfg.outage_limit_s:
            if any(a.status == 202 and a.sent > kill for a in self.attempts):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(cfg.after_first_202_s)
        stop_load.set()
        await asyncio.gather(steady, *burst)
        # the offers of rides sent after the kill
        deadline = time.time() + 30
        while time.time() < deadline:
            if any(t > kill for t in self.offers):
                break
            await asyncio.sleep(0.2)
        stop_all.set()
        await asyncio.gather(*watchers)
        return await self._account(victim, kill)

    async def _ride_status(self, ride_id: str) -> int:
        """GET the ride: a 5xx or a timeout is asked again (5 tries), a 404 is an answer."""
        for _ in range(5):
            response = await self._call("GET", f"/v1/rides/{ride_id}", "ops", "cluster-bench")
            code = 0 if response is None else response.status_code
            if code in (200, 404):
                break
            await asyncio.sleep(1.0)
        return code

    async def _account(self, victim: int, kill: float) -> dict[str, Any]:
        acked = [a.ride_id for a in self.attempts if a.status == 202 and a.ride_id]
        statuses = {ride_id: await self._ride_status(ride_id) for ride_id in acked}
        first = min(a.sent for a in self.attempts)
        events = await ride_events(self.redis, MarketKeys("sf").rides, int(first * 1000) - 1000)
        in_stream = {ride for kind, ride, _ in events if kind == "ride.requested"}
        burst = [a for a in self.attempts if a.burst]
        return {
            "acks": self.acks,
            "kill_at": kill,
            "no_offer_s": silence_s(self.offers, self.offers, kill),
            "no_202_s": no_202_s(self.attempts, kill),
            "burst": len(burst),
            "burst_acked": sum(1 for a in burst if a.status == 202),
            "statuses": {str(k): v for k, v in Counter(a.status for a in self.attempts).items()},
            "loss": account_losses(acked, statuses, in_stream),
            "promoted": primary_port_of(self.url, "sf") != victim,
            "offers_seen": len(self.offers),
        }


async def failover_figure(cfg: FailoverConfig, pairs: int, work_dir: Path) -> dict[str, Any]:
    runs = []
    for pair in range(pairs):
        for acks in (False, True):
            say(f"failover pair {pair + 1}/{pairs}, acks {'on' if acks else 'off'}")
            run = FailoverRun(cfg, acks, work_dir / f"failover-{pair}-{int(acks)}")
            result = await run.run()
            say(
                f"  no offers {result['no_offer_s']}, no 202 {result['no_202_s']}, "
                f"lost {len(result['loss']['lost'])} of {result['loss']['acknowledged']}"
            )
            runs.append(result)
    return {"config": asdict(cfg), "runs": runs}


# ---- end to end: a cluster next to one server ----------------------------------------------


@dataclass(frozen=True)
class ClusterE2EConfig:
    pings_per_s: int = 2500  # per market
    rides_per_s: float = 5.0  # per market
    seconds: float = 15.0
    fleet_per_market: int = 2000
    available_per_market: int = 600
    batch_pings: int = 100


def _driver(market: str, i: int) -> str:
    return f"{market}-bd{i:06d}"


def _telemetry(
    cfg: ClusterE2EConfig, market: str, block: int, step: int, token: str, port: int
) -> bytes:
    """A request with one ping of each driver of `block`; each step moves them ~30 m NE."""
    first, ids = block * cfg.batch_pings, lambda i: _driver(market, i)
    return fleet.telemetry_request(
        first,
        cfg.batch_pings,
        token=token,
        port=port,
        ts=now_ms(),
        step=step,
        market=market,
        ids=ids,
    )


async def _prepare(cfg: ClusterE2EConfig, name: str, platform: Platform) -> None:
    """Every driver pings once; the first `available_per_market` of each market go available."""
    port, secret = platform.api_port, platform.secret
    fleet, ops = mint_token(secret, "fleet", "cb-fleet"), mint_token(secret, "ops", "cb")
    for market in MARKETS:
        blocks = range(cfg.fleet_per_market // cfg.batch_pings)
        pings = [_telemetry(cfg, market, b, 0, fleet, port) for b in blocks]
        available = (_driver(market, i) for i in range(cfg.available_per_market))
        statuses = await prepare_fleet(port, pings, ops, available, connections=16)
        say(f"  {name}/{market}: {statuses}")


def _status_counts(results: list[loadgen.PacedResult]) -> dict[str, int]:
    counts: Counter[int] = Counter()
    for r in results:
        counts.update(r.statuses)
        counts[0] += r.failures  # connection errors
    return {str(k): v for k, v in sorted(counts.items()) if v}


async def e2e_step(
    cfg: ClusterE2EConfig, name: str, platform: Platform, pair: int
) -> dict[str, Any]:
    """Paced telemetry and rides in every market for `cfg.seconds`, on one platform."""
    port, secret = platform.api_port, platform.secret
    fleet = mint_token(secret, "fleet", "cb-fleet")
    blocks = cfg.fleet_per_market // cfg.batch_pings

    def telemetry(market: str, step: int) -> Callable[[int], bytes]:
        return lambda i: _telemetry(cfg, market, i % blocks, step + i // blocks, fleet, port)

    def rides(market: str, step: int) -> Callable[[int], bytes]:
        box = service_box(0.03, market)

        def make(i: int) -> bytes:
            lat, lon = home_point(7 + i * 13, box)
            token = mint_token(secret, "rider", f"cb-{market}-{step * 100_000 + i}")
            body = orjson.dumps(ride_body(lat, lon))
            return loadgen.build_request("POST", "/v1/rides", token=token, body=body, port=port)

        return make

    # every market of every step its own drift step and rider range
    senders = [
        loadgen.paced(port, make, rate_per_s=rate, seconds=cfg.seconds, max_connections=conns)
        for step, market in enumerate(MARKETS, start=2 * pair + 1)
        for make, rate, conns in (
            (telemetry(market, step), cfg.pings_per_s / cfg.batch_pings, 16),
            (rides(market, step), cfg.rides_per_s, 64),
        )
    ]
    async with connect(Settings(), platform.redis_url()) as redis:
        stop = asyncio.Event()
        lags: dict[str, GroupLag] = {}
        streams = {
            f"{m}/{kind}": getattr(MarketKeys(m), kind)
            for m in MARKETS
            for kind in ("telemetry", "rides")
        }
        sampler = asyncio.create_task(sample_lag(redis, streams, stop, lags))
        since = now_ms()
        results = await asyncio.gather(*senders)
        stop.set()
        await sampler
        await asyncio.sleep(2.0)  # the offers of the last requests
        events = [e for m in MARKETS for e in await ride_events(redis, MarketKeys(m).rides, since)]
    gaps, unoffered = request_to_offer_ms(events)
    telemetry_results, ride_results = results[0::2], results[1::2]
    return {
        "contender": name,
        "pings_per_s": sum(r.accepted for r in telemetry_results) * cfg.batch_pings / cfg.seconds,
        "rides_per_s": sum(r.accepted for r in ride_results) / cfg.seconds,
        "statuses": {
            "telemetry": _status_counts(telemetry_results),
            "rides": _status_counts(ride_results),
        },
        "offer_p50_ms": percentile(gaps, 50) if gaps else None,
        "offer_p99_ms": percentile(gaps, 99) if gaps else None,
        "offered": len(gaps),
        "unoffered": unoffered,
        "lag_s": max((v.max_seconds for v in lags.values()), default=0.0),
        "lag": {k: round(v.max_seconds, 3) for k, v in sorted(lags.items())},
    }


async def e2e_figure(cfg: ClusterE2EConfig, pairs: int, work_dir: Path) -> dict[str, Any]:
    """Both platforms up at once; steps alternate between them (one server first each pair)."""
    markets = ("--markets", ",".join(MARKETS))
    contenders = {
        "one server": Platform(work_dir / "single", "--no-sim", *markets),
        "cluster": Platform(work_dir / "cluster", "--no-sim", *markets, *CLUSTER_ARGS),
    }
    steps = []
    async with running(*contenders.values()):
        for name, platform in contenders.items():
            await _prepare(cfg, name, platform)
        await asyncio.sleep(3.0)  # consumers catch up on the fleet's first pings
        for pair in range(pairs):
            for name, platform in contenders.items():
                step = await e2e_step(cfg, name, platform, pair)
                say(
                    f"e2e pair {pair + 1}/{pairs} {name}: {step['pings_per_s']:.0f} pings/s, "
                    f"{step['rides_per_s']:.1f} rides/s, offer p99 {step['offer_p99_ms']}, "
                    f"lag {step['lag_s']:.2f}s"
                )
                steps.append(step)
    return {"config": asdict(cfg), "steps": steps}


# ---- command line --------------------------------------------------------------------------


async def measure(which: str, pairs: int, quick: bool) -> dict[str, Any]:
    failover = (
        FailoverConfig(before_kill_s=4.0, after_first_202_s=4.0) if quick else FailoverConfig()
    )
    e2e = ClusterE2EConfig(seconds=5.0) if quick else ClusterE2EConfig()
    host = machine_info(None)
    results: dict[str, Any] = {  # as docs/scaling.md prints them
        "date": host["date"],
        "machine": f"{host['cores']} cores, {host['ram_gb']:.0f} GB RAM, Linux {host['kernel']}",
        "load_avg_at_start": ", ".join(f"{x:.2f}" for x in host["load_avg_at_start"]),
    }
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
        if which in ("failover", "all"):
            results["failover"] = await failover_figure(failover, pairs, Path(tmp))
        if which in ("e2e", "all"):
            results["e2e"] = await e2e_figure(e2e, pairs, Path(tmp))
    return results


def write(results: dict[str, Any], out: Path) -> None:
    """Merge into cluster-bench.json (a figure not rerun keeps its last result) and render."""
    path = out / "cluster-bench.json"
    merged = orjson.loads(path.read_bytes()) if path.exists() else {}
    merged.update(results)
    publish(merged, path, out / "scaling.md", lambda results, page: render_into(page, results))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench.cluster", description=__doc__)
    parser.add_argument("figure", choices=("failover", "e2e", "all"), nargs="?", default="all")
    parser.add_argument("--pairs", type=int, default=3, help="off/on (or server/cluster) pairs")
    parser.add_argument("--quick", action="store_true", help="short steps: a smoke run")
    parser.add_argument("--out", type=Path, default=DOCS)
    parser.add_argument("--render", action="store_true", help="only re-render from the JSON")
    args = parser.parse_args(argv)
    if args.render:
        write({}, args.out)
        return
    results = asyncio.run(measure(args.figure, args.pairs, args.quick))
    results["command"] = command_line("loadtests.bench.cluster", argv)
    write(results, args.out)


if __name__ == "__main__":
    main()
