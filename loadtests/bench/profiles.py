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
from loadtests.bench.servers import start_ingest
from loadtests.bench.wrk import write_requests
from loadtests.platform import tool

_LINE = re.compile(r":\d+\)$")
# functions whose inclusive share the report quotes (ours, and the framework layers around them)
INGEST_WATCH = (
    "post_location",
    "post_telemetry",
    "Deps.authenticate",
    "json_body",
    "accept_ping",
    "check_ping",
    "TelemetryBatcher._flush",
    "TelemetryBatcher._append",
    "solve_dependencies",
    "RequestResponseCycle.send",
    "HttpToolsProtocol.data_received",
    "NativeTelemetry.enabled",
)
CONSUMER_WATCH = (
    "decode",
    "BaseModel.model_validate",
    "Envelope.from_fields",
    "update_positions",
    "HiredisPackingConnection.pack_commands",
    "Pipeline.execute",
    "newest_per_driver",
    "packed_position",
    "ConsumerRuntime._read_new",
    "ConsumerRuntime._commit",
)


def function_of(frame: str) -> str:
    """'f (pkg/mod.py:42)' → 'f (pkg/mod.py)': samples add up per function, not per line."""
    return _LINE.sub(")", frame.strip())


def summarize_collapsed(
    lines: Iterable[str], top: int = 15, within: str | None = None, watch: Iterable[str] = ()
) -> dict[str, Any]:
    """py-spy's raw (collapsed) output → the top functions by self and by inclusive share, over
    the stacks that pass through function `within` (e.g. the serving loop, not start-up imports);
    `watch` lists functions whose inclusive share is reported whatever their rank."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [function_of(f) for f in stack.split(";") if f]
        if not frames or (
            within is not None and not any(f.startswith(within + " ") for f in frames)
        ):
            continue
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n

    def share(c: Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(n / total, 4)) for f, n in c.most_common(top)]

    watched = {
        w: round(sum(n for f, n in inclusive.items() if f.startswith(w + " ")) / total, 4)
        if total
        else 0.0
        for w in watch
    }
    return {
        "samples": total,
        "self": share(own) if total else [],
        "inclusive": share(inclusive) if total else [],
        "watched": watched,
    }


def available() -> bool:
    try:
        tool("py-spy")
    except RuntimeError:
        return False
    return True


def profile_ingest(
    redis_url: str,
    secret: str,
    key_prefix: str,
    admin: redis.Redis,
    stream: str,
    work: Path,
    wrk_binary: str | None,
    seconds: float,
) -> dict[str, Any]:
    """A separate ingest process under py-spy (the measured one runs unprofiled)."""
    out: dict[str, Any] = {}
    for kind, requests, connections in (
        ("single_ping", http_figures.single_ping_requests(secret), 64),
        ("batch", http_figures.batch_requests(secret), 4),
    ):
        raw = work / f"profile-{kind}.txt"
        server = start_ingest(
            redis_url=redis_url,
            secret=secret,
            key_prefix=key_prefix,
            logs=work / "logs",
            profile_to=raw,
        )
        try:
            file = write_requests(work / f"profile-{kind}-requests.txt", requests)
            http_figures.drive(
                wrk_binary, server, file, requests, connections=connections, seconds=2
            )
            http_figures.drive(
                wrk_binary, server, file, requests, connections=connections, seconds=seconds
            )
        finally:
            server.stop()
        _wait_for(raw)
        admin.delete(stream)
        lines = raw.read_text().splitlines() if raw.exists() else []
        out[kind] = summarize_collapsed(lines, within="Server.run", watch=INGEST_WATCH)
    return out


def profile_consumer(
    url: str, key_prefix: str, admin: redis.Redis, work: Path, pings: int
) -> dict[str, Any]:
    raw = work / "profile-consumer.txt"
    plan = consumer_figure.ConsumerPlan(reps=1)
    prefix = f"{key_prefix}:prof"
    consumer_figure.ours(url, prefix, plan, pings=pings, profile_to=raw)
    consumer_figure.drop_keys(admin, prefix)
    _wait_for(raw)
    lines = raw.read_text().splitlines() if raw.exists() else []
    return summarize_collapsed(lines, within="ConsumerRuntime.run", watch=CONSUMER_WATCH)


def _wait_for(path: Path, timeout_s: float = 10.0) -> None:
    """py-spy writes its file after the profiled process exits."""
    deadline = time.monotonic() + timeout_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
