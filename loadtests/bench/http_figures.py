"""Figures 1 and 2: ingest over HTTP against its peers, interleaved repetitions in one run.

1. single-ping POST /v1/drivers/{id}/location, req/s on one worker, vs a FastAPI hello world and
   a naive FastAPI + pydantic + XADD per request (with and without per-request JWT checks);
2. batch POST /v1/telemetry (1000 pings per request, a fleet token), pings/s, vs pipelined XADD
   of the same entries from a Python client (the Redis floor)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis

from loadtests.bench import loadgen
from loadtests.bench.fleet import driver_id, pings
from loadtests.bench.measure import Measure, Rep, interleave
from loadtests.bench.servers import ServerProcess, module_argv, run_json_child
from loadtests.bench.wrk import LoadResult, Request, run_wrk, write_requests
from ridepulse.auth import mint_token
from ridepulse.contracts.envelope import now_ms

SINGLE_DRIVERS = 8192  # per-driver tokens; at ~10k req/s each driver stays under 5 pings/s
SINGLE_CONNECTIONS = 64
BATCH_PINGS = 1000
BATCH_BODIES = 16
BATCH_CONNECTIONS = 4
# Timeouts at the end of a closed-loop run are fine; anything more is a contender that is broken.
MAX_ERROR_SHARE = 0.001


@dataclass(frozen=True)
class LoadPlan:
    seconds: float = 5.0
    reps: int = 5  # pairs per ratio: its median and spread are what a page may publish
    warmup_s: float = 2.0


def single_ping_requests(secret: str) -> list[Request]:
    """One request per driver, each with the driver's own token (the token cache is warm after
    the warm-up, as it is for drivers that ping every few seconds)."""
    bodies = pings(0, SINGLE_DRIVERS, ts=None, with_id=False)
    return [
        Request(
            f"/v1/drivers/{driver_id(i)}/location",
            mint_token(secret, "driver", driver_id(i)),
            orjson.dumps(b),
        )
        for i, b in enumerate(bodies)
    ]


def batch_requests(secret: str) -> list[Request]:
    token = mint_token(secret, "fleet", "bench-fleet")
    ts = now_ms()  # valid for 5 minutes: the batch figure takes well under one
    return [
        Request(
            "/v1/telemetry",
            token,
            orjson.dumps({"pings": pings(i * BATCH_PINGS, BATCH_PINGS, ts=ts)}),
        )
        for i in range(BATCH_BODIES)
    ]


@dataclass(frozen=True)
class Load:
    """Pre-built requests (and wrk's file of them) sent closed loop over `connections`, by wrk
    when present, else by the asyncio client."""

    requests: list[Request]
    file: Path
    connections: int
    wrk_binary: str | None

    @classmethod
    def write(
        cls, path: Path, requests: list[Request], connections: int, wrk_binary: str | None
    ) -> Load:
        return cls(requests, write_requests(path, requests), connections, wrk_binary)

    def drive(self, server: ServerProcess, seconds: float) -> LoadResult:
        """One run against `server`. A contender that answers errors is broken, not slow: its
        figure would be a rate of failures, so the run stops and names the server's log."""
        if self.wrk_binary is not None:
            result = run_wrk(
                self.wrk_binary,
                server.base,
                self.file,
                connections=self.connections,
                seconds=seconds,
            )
        else:
            raw = [
                loadgen.build_request(
                    "POST", r.path, token=r.token or None, body=r.body, port=server.port
                )
                for r in self.requests
            ]
            result = asyncio.run(
                loadgen.closed_loop(server.port, raw, connections=self.connections, seconds=seconds)
            )
        if result.errors > MAX_ERROR_SHARE * max(result.requests, 1):
            raise RuntimeError(
                f"{server.name} answered {result.errors} errors in {result.requests} requests: "
                f"{server.tail()}"
            )
        return result

    def rep(self, server: ServerProcess, seconds: float, per_request: int = 1) -> Rep:
        """A repetition against `server`: requests/s (times the pings per request), with wrk's
        counts and latencies beside it."""

        def run() -> tuple[float, dict[str, Any]]:
            r = self.drive(server, seconds)
            return r.ok_per_s * per_request, {
                "errors": r.errors,
                "requests": r.requests,
                "p50_ms": r.p50_us / 1000,
                "p99_ms": r.p99_us / 1000,
            }

        return run


@dataclass(frozen=True)
class Rig:
    """What figures 1 and 2 and ingest's profile share."""

    secret: str  # the platform's token secret
    url: str  # the embedded server as ingest's ACL user
    admin: redis.Redis
    stream: str  # the telemetry stream ingest appends to
    work: Path
    wrk_binary: str | None


def single_ping_figure(servers: list[ServerProcess], rig: Rig, plan: LoadPlan) -> dict[str, Any]:
    requests = single_ping_requests(rig.secret)
    load = Load.write(rig.work / "single.txt", requests, SINGLE_CONNECTIONS, rig.wrk_binary)
    for server in servers:
        load.drive(server, plan.warmup_s)
    measures = [(Measure(s.name, "req/s"), load.rep(s, plan.seconds)) for s in servers]
    interleave(measures, plan.reps)
    return {m.label: m.to_json() for m, _ in measures}


def raw_xadd(url: str, stream: str, seconds: float) -> dict[str, float]:
    argv = module_argv(
        "loadtests.bench.peers.raw_xadd",
        url=url,
        stream=stream,
        seconds=seconds,
        entry_pings=BATCH_PINGS,
    )
    return run_json_child(argv, seconds + 120)


def batch_figure(ingest: ServerProcess, rig: Rig, plan: LoadPlan) -> dict[str, Any]:
    requests = batch_requests(rig.secret)
    load = Load.write(rig.work / "batch.txt", requests, BATCH_CONNECTIONS, rig.wrk_binary)
    load.drive(ingest, plan.warmup_s)
    rig.admin.delete(rig.stream)

    def floor() -> tuple[float, dict[str, Any]]:
        raw = raw_xadd(rig.url, rig.stream, plan.seconds)
        return raw["pings"] / raw["seconds"], raw

    ours = Measure("ingest batch", "pings/s")
    xadd = Measure("raw pipelined XADD", "pings/s")
    contenders = [(ours, load.rep(ingest, plan.seconds, BATCH_PINGS)), (xadd, floor)]
    # between runs the stream goes, keeping the server's memory (and AOF) small
    interleave(contenders, plan.reps, after=lambda: rig.admin.delete(rig.stream))
    return {"ingest": ours.to_json(), "raw_xadd": xadd.to_json()}
