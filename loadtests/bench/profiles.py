"""Profiles of the hot paths with py-spy (sampling, out of process): the ingest worker under the
single-ping and batch loads, and the geo consumer draining a backlog. Summarised per function."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import redis

from loadtests.bench import consumer_figure, http_figures
from loadtests.bench.http_figures import BATCH_CONNECTIONS, SINGLE_CONNECTIONS
from loadtests.bench.servers import start_ingest
from loadtests.platform import tool

_LINE = re.compile(r":\d+\)$")
# Functions by qualname, as py-spy names them (its paths vary with how a package is installed),
# each with the module that defines it. The stacks counted run through one of the WITHIN
# functions (the serving loop, not start-up imports or the consumer's pre-fill); the watched
# functions' inclusive shares are reported whatever their rank (ours, and the framework layers
# around them). A unit test imports each one, so a rename fails the suite instead of reading as
# 0 % in the next profile.
INGEST_WITHIN = {"Server.run": "uvicorn.server"}
INGEST_WATCH = {
    "post_location": "ingest.routes_telemetry",
    "post_telemetry": "ingest.routes_telemetry",
    "accept_ping": "ingest.routes_telemetry",
    "Deps.authenticate": "ingest.deps",
    "json_body": "ingest.deps",
    "check_ping": "ingest.validation",
    "decode_batch": "ingest.fast_batch",
    "TelemetryBatcher._flush": "ingest.batcher",
    "TelemetryBatcher._append": "ingest.batcher",
    "solve_dependencies": "fastapi.dependencies.utils",
    "RequestResponseCycle.send": "uvicorn.protocols.http.httptools_impl",
    "HttpToolsProtocol.data_received": "uvicorn.protocols.http.httptools_impl",
}
# A batch in flight is a task of its own, whose stack starts at _process, not at run
CONSUMER_WITHIN = {
    "ConsumerRuntime.run": "ridepulse.bus.consumer",
    "ConsumerRuntime._process": "ridepulse.bus.consumer",
}
CONSUMER_WATCH = {
    "decode": "ridepulse.contracts.registry",
    "decode_locations_json": "ridepulse.contracts.telemetry_decode",
    "ConsumerRuntime._conflate": "ridepulse.bus.consumer",
    "conflate": "ridepulse.bus.conflation",
    "update_positions": "matching.geo_index",
    "newest_per_driver": "matching.geo_index",
    "packed_position": "matching.geo_index",
    "PositionFilter.wrote": "matching.geo_filter",
    "HiredisPackingConnection.pack_command": "ridepulse.redis_client",
    "ConsumerRuntime._read_new": "ridepulse.bus.consumer",
    "ConsumerRuntime._commit": "ridepulse.bus.consumer",
}


def function_of(frame: str) -> str:
    """'f (pkg/mod.py:42)' → 'f (pkg/mod.py)': samples add up per function, not per line."""
    return _LINE.sub(")", frame.strip())


def summarize_collapsed(
    lines: Iterable[str], top: int = 15, within: Iterable[str] = (), watch: Iterable[str] = ()
) -> dict[str, Any]:
    """py-spy's raw (collapsed) output → the top functions by self and by inclusive share, over
    the stacks that pass through a function of `within` (e.g. the serving loop, not start-up
    imports; all stacks when empty);
    `watch` lists functions whose inclusive share is reported whatever their rank."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    roots = tuple(f"{w} " for w in within)
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        frames = [function_of(f) for f in stack.split(";") if f]
        if not frames or not count.isdigit():
            continue
        if not roots or any(f.startswith(roots) for f in frames):
            own[frames[-1]] += int(count)
            inclusive.update(dict.fromkeys(frames, int(count)))  # once per stack, however deep
    total = own.total()

    def share(n: int) -> float:
        return round(n / total, 4) if total else 0.0

    return {
        "samples": total,
        "self": [(f, share(n)) for f, n in own.most_common(top)],
        "inclusive": [(f, share(n)) for f, n in inclusive.most_common(top)],
        "watched": {
            w: share(sum(n for f, n in inclusive.items() if f.startswith(w + " "))) for w in watch
        },
    }


def available() -> bool:
    try:
        tool("py-spy")
    except RuntimeError:
        return False
    return True


def profile_ingest(rig: http_figures.Rig, key_prefix: str, seconds: float) -> dict[str, Any]:
    """A separate ingest process under py-spy (the measured one runs unprofiled)."""
    out: dict[str, Any] = {}
    for kind, requests, connections in (
        ("single_ping", http_figures.single_ping_requests(rig.secret), SINGLE_CONNECTIONS),
        ("batch", http_figures.batch_requests(rig.secret), BATCH_CONNECTIONS),
    ):
        raw = rig.work / f"profile-{kind}.txt"
        server = start_ingest(
            redis_url=rig.url,
            secret=rig.secret,
            key_prefix=key_prefix,
            logs=rig.work / "logs",
            profile_to=raw,
        )
        file = rig.work / f"profile-{kind}-requests.txt"
        load = http_figures.Load.write(file, requests, connections, rig.wrk_binary)
        try:
            for run_s in (2, seconds):  # a warm-up, then the profiled run
                load.drive(server, run_s)
        finally:
            server.stop()
        rig.admin.delete(rig.stream)
        out[kind] = _summary(raw, within=INGEST_WITHIN, watch=INGEST_WATCH)
    return out


def profile_consumer(
    url: str, admin_url: str, key_prefix: str, admin: redis.Redis, work: Path, pings: int
) -> dict[str, Any]:
    raw = work / "profile-consumer.txt"
    prefix = key_prefix  # the prefix matching-geo's ACL patterns name
    consumer_figure.ours(url, admin_url, prefix, consumer_figure.ConsumerPlan(reps=1), pings, raw)
    consumer_figure.drop_keys(admin, prefix)
    return _summary(raw, within=CONSUMER_WITHIN, watch=CONSUMER_WATCH)


def _summary(
    raw: Path, within: Iterable[str], watch: Iterable[str], timeout_s: float = 10.0
) -> dict[str, Any]:
    """py-spy writes its file after the profiled process exits: wait for it, then summarise."""
    deadline = time.monotonic() + timeout_s
    while not raw.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = raw.read_text().splitlines() if raw.exists() else []
    return summarize_collapsed(lines, within=within, watch=watch)
