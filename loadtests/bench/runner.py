"""The whole run: one embedded server for figures 1-3, then a fresh platform per end-to-end level;
progress printed as it goes; the results dict that report.py renders."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from loadtests.bench import consumer_figure, http_figures, profiles
from loadtests.bench.affinity import LOAD_CORES, all_cores, pin
from loadtests.bench.e2e import E2EConfig, run_e2e
from loadtests.bench.machine import machine_info
from loadtests.bench.noise import CpuAccount
from loadtests.bench.servers import ServerProcess, start_ingest, start_peer
from loadtests.bench.sweep import SweepPlan, run_sweep
from loadtests.bench.wrk import find_or_install_wrk
from ridepulse.keys import MarketKeys
from ridepulse.redis_server import EmbeddedRedis

KEY_PREFIX = "bench"  # the embedded server's ACL users may touch bench:* only


def say(message: str) -> None:
    print(message, flush=True)


@dataclass
class BenchPlan:
    seconds: float = 5.0
    reps: int = 5  # pairs per ratio: its median and spread are what a page may publish
    warmup_s: float = 2.0
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


def _phase(name: str, results: dict[str, Any], run: Callable[[], Any]) -> Any:
    say(f"== {name}")
    account = CpuAccount.start()
    started = time.monotonic()
    value = run()
    results["noise"][name] = {
        "seconds": round(time.monotonic() - started, 1),
        "foreign_cores": round(account.foreign_cores(), 2),
        "our_cores": round(account.our_cores(), 2),
    }
    say(
        f"   ({results['noise'][name]['seconds']} s; other processes used "
        f"{results['noise'][name]['foreign_cores']:.2f} cores meanwhile)"
    )
    return value


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
        "plan": {
            "seconds": plan.seconds,
            "reps": plan.reps,
            "warmup_s": plan.warmup_s,
            "load_generator": "wrk" if wrk_binary else "asyncio",
        },
    }
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="ridepulse-bench-"))
    try:
        if plan.figures & {"1", "2", "3"}:
            _embedded_figures(plan, results, work, wrk_binary)
        if "4" in plan.figures:
            results["figures"]["e2e"] = []
            for index, level in enumerate(plan.e2e_levels):
                name = (
                    f"4/5. end to end + memory @ {level.pings_per_s} pings/s"
                    f" + {level.rides_per_s:g} rides/s"
                )
                level_dir = work / f"e2e{index}"

                def run_level(c: E2EConfig = level, d: Path = level_dir) -> dict[str, Any]:
                    return asyncio.run(run_e2e(c, d))

                results["figures"]["e2e"].append(_phase(name, results, run_level))
        if "S" in plan.figures:
            results["figures"]["sweep"] = _phase(
                "6. capacity sweep", results, lambda: run_sweep(plan.sweep, work, wrk_binary, say)
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["duration_s"] = round(time.monotonic() - started, 1)
    return results


def _embedded_figures(
    plan: BenchPlan, results: dict[str, Any], work: Path, wrk_binary: str | None
) -> None:
    os_cores = all_cores()
    pin(
        os.getpid(), LOAD_CORES
    )  # the harness (and the asyncio client, if used) stays off the server's core
    server = EmbeddedRedis(work / "redis", key_prefix=KEY_PREFIX).start()
    if server.process is not None:
        pin(server.process.pid, LOAD_CORES)
    admin = redis.Redis.from_url(server.url)
    secret = secrets.token_urlsafe(32)
    telemetry = MarketKeys("sf", KEY_PREFIX).telemetry
    load = http_figures.LoadPlan(seconds=plan.seconds, reps=plan.reps, warmup_s=plan.warmup_s)
    figures = results["figures"]
    running: list[ServerProcess] = []
    try:
        if plan.figures & {"1", "2"}:
            say("starting ingest (`ridepulse run ingest`) and the peers, one uvicorn worker each")
            ingest = start_ingest(
                redis_url=server.url_for("ingest"),
                secret=secret,
                key_prefix=KEY_PREFIX,
                logs=work / "logs",
            )
            running.append(ingest)
            env = {
                "BENCH_REDIS_URL": server.url_for("ingest"),
                "BENCH_SECRET": secret,
                # a telemetry stream of its own market: the ingest ACL user may append to it
                "BENCH_STREAM": MarketKeys("naive", KEY_PREFIX).telemetry,
            }
            peers = [
                start_peer("hello", env={}, logs=work / "logs"),
                start_peer("naive", env=env, logs=work / "logs"),
                start_peer("naive-jwt", env=env, logs=work / "logs"),
                start_peer("hello", env={}, logs=work / "logs", gc_tuned=True),
            ]
            running.extend(peers)
        if "1" in plan.figures:
            measures = _phase(
                "1. single-ping HTTP ingest",
                results,
                lambda: http_figures.single_ping_figure(
                    [ingest, *peers], secret, load, work, wrk_binary, say
                ),
            )
            figures["single_ping"] = {m.label: m.to_json() for m in measures}
            admin.delete(telemetry, f"{KEY_PREFIX}:{{sf}}:naive")
        if "2" in plan.figures:
            ours, floor = _phase(
                "2. batch telemetry",
                results,
                lambda: http_figures.batch_figure(
                    ingest,
                    secret,
                    admin,
                    telemetry,
                    server.url_for("ingest"),
                    load,
                    work,
                    wrk_binary,
                    say,
                ),
            )
            figures["batch"] = {"ingest": ours.to_json(), "raw_xadd": floor.to_json()}
        for process in running:
            process.stop()
        running.clear()
        if plan.profile and profiles.available() and plan.figures & {"1", "2"}:
            results["profiles"]["ingest"] = _phase(
                "profile: ingest under py-spy",
                results,
                lambda: profiles.profile_ingest(
                    server.url_for("ingest"),
                    secret,
                    KEY_PREFIX,
                    admin,
                    telemetry,
                    work,
                    wrk_binary,
                    plan.seconds,
                ),
            )
        if "3" in plan.figures:
            cplan = consumer_figure.ConsumerPlan(reps=plan.reps)
            mine, peer = _phase(
                "3. telemetry consumer",
                results,
                lambda: consumer_figure.consumer_figure(
                    server.url_for("matching"), KEY_PREFIX, admin, cplan, say
                ),
            )
            figures["consumer"] = {
                "matching": mine.to_json(),
                "faststream": peer.to_json(),
                "entry_pings": cplan.entry_pings,
            }
            if plan.profile and profiles.available():
                results["profiles"]["consumer"] = _phase(
                    "profile: geo consumer under py-spy",
                    results,
                    lambda: profiles.profile_consumer(
                        server.url_for("matching"), KEY_PREFIX, admin, work, cplan.ours_pings
                    ),
                )
    finally:
        for process in running:
            process.stop()
        admin.close()
        server.stop()
        if os_cores:
            pin(os.getpid(), os_cores)  # the end-to-end stack gets the whole machine
