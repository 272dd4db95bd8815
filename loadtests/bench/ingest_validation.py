"""Pings/s through batch validation + stream encode, old path (orjson + check_ping per ping,
a dict each, orjson encode) against the new one (msgspec decode into structs, msgspec
encode), alternated in the same process (measure.interleave), median of per-pair ratios with
spread.

    .venv/bin/python -m loadtests.bench.ingest_validation [--pairs 7] [--batch 1000]

No Redis, no HTTP: only the CPU that the batch route spends per ping before its XADD."""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from ingest.fast_batch import decode_batch
from ingest.validation import check_id, check_ping
from loadtests.bench.measure import old_against_new, say
from loadtests.bench.report import fmt_paired
from ridepulse.contracts.envelope import now_ms
from ridepulse.markets import MarketMap, load_markets

_encode = msgspec.json.Encoder().encode


def make_body(n: int, now: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    pings = [
        {
            "driver_id": f"drv-{rng.randrange(20_000)}",
            "lat": round(37.71 + rng.random() * 0.1, 6),
            "lon": round(-122.51 + rng.random() * 0.15, 6),
            "ts": now - rng.randrange(2_000),
            "speed_mps": round(rng.random() * 20, 2),
            "heading": round(rng.random() * 359, 1),
        }
        for _ in range(n)
    ]
    return orjson.dumps({"pings": pings})


def old_path(raw: bytes, now: int, markets: MarketMap) -> int:
    """What POST /v1/telemetry did per batch up to this change (v0.1.0's route body)."""
    body = orjson.loads(raw)
    by_market: dict[str, list[dict[str, Any]]] = {}
    for item in body["pings"]:
        driver_id = check_id(item.get("driver_id"), "driver_id")
        ping = check_ping(item, driver_id, now)
        by_market.setdefault(markets.locate(ping["lat"], ping["lon"]).id, []).append(ping)
    return sum(len(orjson.dumps({"pings": group})) for group in by_market.values())


def new_path(raw: bytes, now: int, markets: MarketMap) -> int:
    by_market = decode_batch(raw, now, markets)
    assert by_market is not None
    return sum(len(_encode({"pings": group})) for group in by_market.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=1.0, help="per contender per pair")
    args = parser.parse_args()
    markets = load_markets()  # the built-in SF market
    now = now_ms()
    batch: int = args.batch
    raw = make_body(batch, now)

    def rate(path: Callable[[bytes, int, MarketMap], int]) -> float:
        """Pings/s through `path`, run over and over for `--seconds`."""
        batches = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < args.seconds:
            path(raw, now, markets)
            batches += 1
        return batches * batch / elapsed

    old, new = old_against_new(
        "", "pings/s", lambda: (rate(old_path), {}), lambda: (rate(new_path), {}), args.pairs
    )
    say(
        f"old {old.median:,.0f} pings/s, new {new.median:,.0f} pings/s, new/old"
        f" {fmt_paired(new.reps, old.reps)} (batch {batch})"
    )


if __name__ == "__main__":
    main()
