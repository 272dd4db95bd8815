"""The fan-out bench's repetitions, each on a fresh stack: the embedded server `ridepulse up`
uses, with its ACL users; the dashboard alone, as its own read-only user, started like the other
figures' services (bench/servers.py); and the city. Not `ridepulse up` (loadtests/platform.py):
it starts matching too, which would offer the city's rides before the city does."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psutil

from loadtests.bench.fanout.city import PREFIX, market_keys
from loadtests.bench.fanout.clients import Recorder, clients, loop_lag_ms
from loadtests.bench.machine import machine_info
from loadtests.bench.noise import CpuAccount, machine_busy_s
from loadtests.bench.samplers import cpu_seconds, sample_rss
from loadtests.bench.servers import ServerProcess, module_argv, scratch_redis, start_service
from loadtests.bench.stats import percentile
from loadtests.platform import clean_env
from ridepulse.auth import mint_token
from ridepulse.contracts.envelope import now_ms
from ridepulse.redis_client import connect
from ridepulse.redis_server import EmbeddedRedis
from ridepulse.settings import Settings

SECRET = "bench-dashboard-fanout-0123456789abcdef"
BUSY_MACHINE_CPU = 15.0  # % of a core used by unrelated processes: the run is not clean
DROPS = {
    "dropped_frames": "rp_dashboard_dropped_frames_total",
    "clients_dropped": "rp_dashboard_clients_dropped_total",
}


@dataclass
class Stack:
    server: EmbeddedRedis
    dashboard: ServerProcess
    city: subprocess.Popen[bytes]

    def ws_url(self, viewer: int) -> str:
        """A viewer's feed URL with a token of its own, as each browser that opens a dashboard
        link has: the dashboard caps sockets per token, and the bench runs its defaults."""
        subject = f"bench-{viewer}"  # tokens minted in one second differ only by subject
        token = mint_token(SECRET, "viewer", subject, audience="dashboard", ttl_s=3600)
        return f"ws://127.0.0.1:{self.dashboard.port}/ws?token={token}"

    def processes(self) -> dict[str, psutil.Process]:
        assert self.server.process is not None
        pids = {"dashboard": self.dashboard.process.pid, "clients": os.getpid()}
        pids |= {"valkey": self.server.process.pid, "city": self.city.pid}
        return {name: psutil.Process(pid) for name, pid in pids.items()}

    async def drops(self) -> dict[str, int]:
        """What the dashboard dropped so far (frames, clients) for reading too slowly."""
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{self.dashboard.base}/metrics", timeout=10)).text
        found = dict(re.findall(r"^(rp_\w+) ([0-9.e+]+)$", text, re.M))
        return {name: int(float(found.get(metric, 0))) for name, metric in DROPS.items()}

    async def events_between(self, start_ms: float, end_ms: float) -> int:
        """Ride events written in the window (entry ids carry the same server clock as `time`)."""
        async with connect(Settings(redis_url=self.server.url, key_prefix=PREFIX)) as redis:
            first, last = f"{start_ms:.0f}-0", f"{end_ms:.0f}-{2**64 - 1}"
            return len(await redis.xrange(market_keys().rides, first, last) or ())

    def stop_city(self) -> dict[str, float]:
        """SIGTERM the city; it answers with what it wrote per second."""
        self.city.terminate()
        return dict(json.loads(self.city.communicate(timeout=15)[0].splitlines()[-1]))


@contextlib.contextmanager
def stack(server: EmbeddedRedis, args: argparse.Namespace) -> Iterator[Stack]:
    """The dashboard (unpinned) and the city on `server`, stopped on the way out."""
    dashboard = start_service(
        "dashboard",
        port_setting="RIDEPULSE_DASHBOARD_PORT",
        ready_path="/healthz",
        redis_url=server.url_for("dashboard"),
        secret=SECRET,
        key_prefix=PREFIX,
        logs=server.data_dir,
    )
    city_argv = module_argv(
        "loadtests.bench.dashboard_fanout",
        redis_url=server.url,  # the operator's: see fanout/city.py
        drivers=args.drivers,
        ride_events=args.ride_events,
        ping_interval=args.ping_interval,
    )
    try:
        city = subprocess.Popen([*city_argv, "--city"], env=clean_env(), stdout=subprocess.PIPE)
        try:
            if city.stdout is None or b"ready" not in city.stdout.readline():
                raise RuntimeError("the city process did not start")
            yield Stack(server, dashboard, city)
        finally:
            city.kill()
            city.wait()
    finally:
        dashboard.stop()


async def repetition(args: argparse.Namespace) -> dict[str, Any]:
    """One repetition's figures (the page's columns, by name)."""
    with scratch_redis() as server, stack(server, args) as city:
        recorder = Recorder(args.clients)
        async with clients(city.ws_url, args.clients, recorder, args.measure_every):
            await asyncio.sleep(args.warmup)
            processes, stop = city.processes(), asyncio.Event()
            each = {name: [proc] for name, proc in processes.items()}
            peaks: dict[str, int] = {}
            lags: list[float] = []
            rss = asyncio.create_task(sample_rss(lambda: processes, stop, peaks, 1.0))
            lag = asyncio.create_task(loop_lag_ms(stop, lags))
            before, cpu_before = await city.drops(), cpu_seconds(each)
            others, started, start_ms = CpuAccount.start(), time.monotonic(), now_ms()
            recorder.window = (start_ms, start_ms + args.seconds * 1000)
            await asyncio.sleep(args.seconds)
            cpu_after, wall = cpu_seconds(each), time.monotonic() - started
            other_cores = others.foreign_cores()
            stop.set()
            await asyncio.gather(rss, lag, asyncio.sleep(2))  # the window's last events arrive
            events, after = await city.events_between(*recorder.window), await city.drops()
        rates = city.stop_city()
    cpu = {name: (cpu_after[name] - cpu_before[name]) / wall * 100 for name in cpu_before}
    lat, measured = recorder.latencies_ms, math.ceil(args.clients / args.measure_every)
    per_client_s = args.clients * args.seconds
    return {
        "clients": args.clients,
        "drivers": args.drivers,
        "p50_ms": percentile(lat, 50) if lat else math.nan,
        "p99_ms": percentile(lat, 99) if lat else math.nan,
        "max_ms": max(lat, default=math.nan),
        "cpu_percent": cpu["dashboard"],
        "rss_mib": peaks["dashboard"] / 2**20,
        "connect_s": recorder.connect_s,
        **{name: after[name] - before[name] for name in DROPS},
        **rates,  # pings_per_s, ride_events_per_s
        "coverage": len(lat) / max(1, events * measured),  # seen / (written × measured clients)
        "frames_per_client_s": recorder.frames / per_client_s,
        "kib_per_client_s": recorder.text_bytes / 1024 / per_client_s,
        "bench_cpu_percent": cpu["clients"],
        "loop_lag_p99_ms": percentile(lags, 99) if lags else math.nan,
        "redis_cpu_percent": cpu["valkey"],
        "city_cpu_percent": cpu["city"],
        "other_cpu_percent": other_cores * 100,  # outside this run's processes: ~0 when fair
        "samples": len(lat),
    }


async def wait_for_quiet_machine(timeout_s: float = 300.0, sample_s: float = 2.0) -> None:
    """On a shared machine, start a repetition only once others leave the CPUs alone."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        busy_s = machine_busy_s()
        await asyncio.sleep(sample_s)
        if (machine_busy_s() - busy_s) / sample_s * 100 < BUSY_MACHINE_CPU:
            return
    print(f"the machine stayed busy for {timeout_s:.0f} s: measuring anyway", flush=True)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    """The page's JSON. A repetition in which other processes took CPU is discarded and run
    again (up to twice per repetition asked for)."""
    runs: list[dict[str, Any]] = []
    discarded = 0
    while len(runs) < args.repeats:
        await wait_for_quiet_machine()
        figures = await repetition(args)
        line = f"run {len(runs) + 1}/{args.repeats}: {json.dumps(figures)}"
        if figures["other_cpu_percent"] > BUSY_MACHINE_CPU and discarded < 2 * args.repeats:
            discarded += 1
            print(f"discarded, other processes took CPU: {line}", flush=True)
            continue
        print(line, flush=True)
        runs.append(figures)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "city", "redis_url")}
    busy = {"busy": BUSY_MACHINE_CPU, "discarded": discarded}  # busy: % of a core, see above
    return {"machine": machine_info(None), "settings": settings, "runs": runs, **busy}
