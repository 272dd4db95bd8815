"""The whole run: one embedded server for figures 1-3, then a fresh platform per end-to-end level;
progress printed as it goes; the results dict that document.py renders."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from loadtests.bench import consumer_figure, http_figures, profiles
from loadtests.bench.affinity import LOAD_CORES, all_cores, pin
from loadtests.bench.e2e import E2EConfig, run_e2e
from loadtests.bench.http_figures import LoadPlan, Rig
from loadtests.bench.machine import machine_info
from loadtests.bench.measure import say
from loadtests.bench.noise import CpuAccount
from loadtests.bench.servers import ServerProcess, start_ingest, start_peer
from loadtests.bench.sweep import SweepPlan, run_sweep
from loadtests.bench.wrk import find_or_install_wrk
from ridepulse.keys import MarketKeys
from ridepulse.redis_server import EmbeddedRedis

KEY_PREFIX = "bench"  # the embedded server's ACL users may touch bench:* only


@dataclass
class BenchPlan:
    load: LoadPlan = field(default_factory=LoadPlan)
    figures: frozenset[str] = frozenset({"1", "2", "3", "4", "S"})
    sweep: SweepPlan = field(default_factory=SweepPlan)
    profile: bool = True
    install_wrk: bool = True
    e2e_levels: list[E2EConfig] = field(
        default_factory=lambda: [
            E2EConfig(50_000, 100, 60, fleet_size=200_000, available_drivers=8_000),
            E2EConfig(10_000, 50, 30, fleet_size=40_000, available_drivers=3_000),
            E2EConfig(2_000, 20, 30, fleet_size=8_000, available_drivers=4_000),
        ]
    )


def run(plan: BenchPlan) -> dict[str, Any]:
    wrk_binary = find_or_install_wrk(install=plan.install_wrk)
    say(
        "load generator: "
        + (f"wrk ({wrk_binary})" if wrk_binary else "asyncio client (wrk not available)")
    )
    results: dict[str, Any] = {
        "machine": machine_info(wrk_binary),
        "figures": {},
        "profiles": {},
        "noise": {},
        "plan": {**asdict(plan.load), "load_generator": "wrk" if wrk_binary else "asyncio"},
    }
    figures = results["figures"]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ridepulse-bench-", ignore_cleanup_errors=True) as tmp:
        bench = _Run(plan, Path(tmp), wrk_binary, results)
        if plan.figures & {"1", "2", "3"}:
            bench.embedded_figures()
        if "4" in plan.figures:
            figures["e2e"] = []
            for index, level in enumerate(plan.e2e_levels):
                load = f"{level.pings_per_s} pings/s + {level.rides_per_s:g} rides/s"
                with bench.phase(f"4/5. end to end + memory @ {load}"):
                    figures["e2e"].append(asyncio.run(run_e2e(level, bench.work / f"e2e{index}")))
        if "S" in plan.figures:
            with bench.phase("6. capacity sweep"):
                figures["sweep"] = run_sweep(plan.sweep, bench.work, wrk_binary)
    results["duration_s"] = round(time.monotonic() - started, 1)
    return results


@dataclass
class _Run:
    plan: BenchPlan
    work: Path
    wrk_binary: str | None
    results: dict[str, Any]

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """A phase of the run, timed, with the cores used by the bench and by others meanwhile."""
        say(f"== {name}")
        account = CpuAccount.start()
        started = time.monotonic()
        yield
        noise = self.results["noise"][name] = {
            "seconds": round(time.monotonic() - started, 1),
            "foreign_cores": round(account.foreign_cores(), 2),
            "our_cores": round(account.our_cores(), 2),
        }
        say(
            f"   ({noise['seconds']} s; other processes used "
            f"{noise['foreign_cores']:.2f} cores meanwhile)"
        )

    def embedded_figures(self) -> None:
        os_cores = all_cores()
        # the harness (and the asyncio client, if used) stays off the server's core
        pin(os.getpid(), LOAD_CORES)
        server = EmbeddedRedis(self.work / "redis", key_prefix=KEY_PREFIX).start()
        if server.process is not None:
            pin(server.process.pid, LOAD_CORES)
        admin = redis.Redis.from_url(server.url)
        try:
            if self.plan.figures & {"1", "2"}:
                self.ingest_figures(server.url_for("ingest"), admin)
            if "3" in self.plan.figures:
                self.consumer_figure(server.url_for("matching-geo"), server.url, admin)
        finally:
            admin.close()
            server.stop()
            if os_cores:
                pin(os.getpid(), os_cores)  # the end-to-end stack gets the whole machine

    def ingest_figures(self, url: str, admin: redis.Redis) -> None:
        """Figures 1 and 2 on one ingest worker and the peers, then ingest under py-spy."""
        plan, figures, logs = self.plan, self.results["figures"], self.work / "logs"
        telemetry = MarketKeys("sf", KEY_PREFIX).telemetry
        rig = Rig(secrets.token_urlsafe(32), url, admin, telemetry, self.work, self.wrk_binary)
        env = {
            "BENCH_REDIS_URL": url,
            "BENCH_SECRET": rig.secret,
            # a telemetry stream of its own market: the ingest ACL user may append to it
            "BENCH_STREAM": MarketKeys("naive", KEY_PREFIX).telemetry,
        }
        say("starting ingest (`ridepulse run ingest`) and the peers, one uvicorn worker each")
        servers: list[ServerProcess] = []
        try:
            servers.append(
                start_ingest(redis_url=url, secret=rig.secret, key_prefix=KEY_PREFIX, logs=logs)
            )
            servers.append(start_peer("hello", env={}, logs=logs))
            servers.append(start_peer("naive", env=env, logs=logs))
            servers.append(start_peer("naive-jwt", env=env, logs=logs))
            servers.append(start_peer("hello", env={}, logs=logs, gc_tuned=True))
            if "1" in plan.figures:
                with self.phase("1. single-ping HTTP ingest"):
                    figures["single_ping"] = http_figures.single_ping_figure(
                        servers, rig, plan.load
                    )
                admin.delete(telemetry, env["BENCH_STREAM"])  # what figure 1 appended
            if "2" in plan.figures:
                with self.phase("2. batch telemetry"):
                    figures["batch"] = http_figures.batch_figure(servers[0], rig, plan.load)
        finally:
            for process in servers:
                process.stop()
        if plan.profile and profiles.available():
            with self.phase("profile: ingest under py-spy"):
                self.results["profiles"]["ingest"] = profiles.profile_ingest(
                    rig, KEY_PREFIX, plan.load.seconds
                )

    def consumer_figure(self, url: str, admin_url: str, admin: redis.Redis) -> None:
        """Figure 3, then the geo consumer under py-spy."""
        cplan = consumer_figure.ConsumerPlan(reps=self.plan.load.reps)
        with self.phase("3. telemetry consumer"):
            mine, peer = consumer_figure.consumer_figure(url, admin_url, KEY_PREFIX, admin, cplan)
        self.results["figures"]["consumer"] = {
            "matching": mine.to_json(),
            "faststream": peer.to_json(),
            "entry_pings": cplan.entry_pings,
        }
        if self.plan.profile and profiles.available():
            with self.phase("profile: geo consumer under py-spy"):
                self.results["profiles"]["consumer"] = profiles.profile_consumer(
                    url, admin_url, KEY_PREFIX, admin, self.work, cplan.ours_pings
                )
