"""Figures 1 and 2: ingest over HTTP against its peers, interleaved repetitions in one run.

1. single-ping POST /v1/drivers/{id}/location, req/s on one worker, vs a FastAPI hello world and
   a naive FastAPI + pydantic + XADD per request (with and without per-request JWT checks);
2. batch POST /v1/telemetry (1000 pings per request, a fleet token), pings/s, vs pipelined XADD
   of the same entries from a Python client (the Redis floor)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import redis

from loadtests.bench import loadgen
from loadtests.bench.fleet import driver_id, pings
from loadtests.bench.measure import Measure
from loadtests.bench.servers import ServerProcess, module_argv, run_json_child
from loadtests.bench.wrk import LoadResult, Request, run_wrk, write_requests
from ridepulse.auth import mint_token
from ridepulse.contracts.envelope import now_ms

SINGLE_DRIVERS = 8192  # per-driver tokens; at ~10k req/s each driver stays under 5 pings/s
BATCH_PINGS = 1000
BATCH_BODIES = 16


@dataclass(frozen=True)
class LoadPlan:
    seconds: float
    reps: int
    warmup_s: float
    single_connections: int = 64
    batch_connections: int = 4


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


# Timeouts at the end of a closed-loop run are fine; anything more is a contender that is broken.
MAX_ERROR_SHARE = 0.001


def drive(
    wrk_binary: str | None,
    server: ServerProcess,
    requests_file: Path,
    requests: list[Request],
    *,
    connections: int,
    seconds: float,
) -> LoadResult:
    """One closed-loop run against `server`: wrk when present, else the asyncio client.

    A contender that answers errors is broken, not slow: its figure would be a rate of failures,
    so the run stops and names the server's log instead of publishing it."""
    if wrk_binary is not None:
        result = run_wrk(
            wrk_binary, server.base, requests_file, connections=connections, seconds=seconds
        )
    else:
        raw = [
            loadgen.build_request(
                "POST", r.path, token=r.token or None, body=r.body, port=server.port
            )
            for r in requests
        ]
        result = asyncio.run(
            loadgen.closed_loop(server.port, raw, connections=connections, seconds=seconds)
        )
    if result.errors > MAX_ERROR_SHARE * max(result.requests, 1):
        raise RuntimeError(
            f"{server.name} answered {result.errors} errors in {result.requests} requests: "
            f"{server.tail()}"
        )
    return result


def record(measure: Measure, rate: float, result: LoadResult) -> None:
    """One repetition's rate, with wrk's counts and latencies beside it."""
    measure.add(
        rate,
        errors=result.errors,
        requests=result.requests,
        p50_ms=result.p50_us / 1000,
        p99_ms=result.p99_us / 1000,
    )


def single_ping_figure(
    servers: list[ServerProcess],
    secret: str,
    plan: LoadPlan,
    work: Path,
    wrk_binary: str | None,
    say: Callable[[str], None],
) -> list[Measure]:
    requests = single_ping_requests(secret)
    requests_file = write_requests(work / "single.txt", requests)
    measures = {s.name: Measure(s.name, "req/s") for s in servers}
    for server in servers:
        drive(
            wrk_binary,
            server,
            requests_file,
            requests,
            connections=plan.single_connections,
            seconds=plan.warmup_s,
        )
    for rep in range(plan.reps):
        for server in servers[rep % len(servers) :] + servers[: rep % len(servers)]:
            result = drive(
                wrk_binary,
                server,
                requests_file,
                requests,
                connections=plan.single_connections,
                seconds=plan.seconds,
            )
            record(measures[server.name], result.ok_per_s, result)
            say(
                f"  rep {rep + 1}/{plan.reps} {server.name:>10}: {result.ok_per_s:8.0f} req/s "
                f"(p50 {result.p50_us / 1000:.1f} ms, p99 {result.p99_us / 1000:.1f} ms, "
                f"errors {result.errors})"
            )
    return list(measures.values())


def raw_xadd(url: str, stream: str, seconds: float) -> dict[str, float]:
    argv = module_argv(
        "loadtests.bench.peers.raw_xadd",
        url=url,
        stream=stream,
        seconds=seconds,
        entry_pings=BATCH_PINGS,
    )
    return run_json_child(argv, seconds + 120)


def batch_figure(
    ingest: ServerProcess,
    secret: str,
    admin: redis.Redis,
    stream: str,
    peer_url: str,
    plan: LoadPlan,
    work: Path,
    wrk_binary: str | None,
    say: Callable[[str], None],
) -> tuple[Measure, Measure]:
    requests = batch_requests(secret)
    requests_file = write_requests(work / "batch.txt", requests)
    ours = Measure("ingest batch", "pings/s")
    floor = Measure("raw pipelined XADD", "pings/s")
    drive(
        wrk_binary,
        ingest,
        requests_file,
        requests,
        connections=plan.batch_connections,
        seconds=plan.warmup_s,
    )
    admin.delete(stream)
    for rep in range(plan.reps):
        for contender in ("ours", "floor") if rep % 2 == 0 else ("floor", "ours"):
            if contender == "ours":
                result = drive(
                    wrk_binary,
                    ingest,
                    requests_file,
                    requests,
                    connections=plan.batch_connections,
                    seconds=plan.seconds,
                )
                rate = result.ok_per_s * BATCH_PINGS
                record(ours, rate, result)
                say(
                    f"  rep {rep + 1}/{plan.reps}     ingest: {rate:10.0f} pings/s "
                    f"({result.ok_per_s:.0f} req/s, p99 {result.p99_us / 1000:.1f} ms, "
                    f"errors {result.errors})"
                )
            else:
                raw = raw_xadd(peer_url, stream, plan.seconds)
                rate = raw["pings"] / raw["seconds"]
                floor.add(rate, **raw)
                say(f"  rep {rep + 1}/{plan.reps}  raw XADD: {rate:10.0f} pings/s")
            admin.delete(stream)  # keep the server's memory (and AOF) small between runs
    return ours, floor
