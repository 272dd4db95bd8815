"""`make soak`: churn driver ids through a running stack and show memory levels off.

Starts `ridepulse up --no-sim` with short silence times, then for `--duration-s` keeps a fleet of
`--active` drivers pinging (one fleet batch a second) while replacing each driver with a new id
after `--lifetime-s`: every driver joins, goes available, pings, and leaves for good. Every
`--sample-s` it records Valkey `used_memory` (and how much of it the streams hold), the number of
keys and each service's RSS, prints the table, and fails (exit 1) when Valkey memory outside the
streams, the key count or a service's RSS is higher in the last quarter of the run than in the
second by more than `--tolerance` (a leak grows; a level does not). Not part of CI: it takes
minutes.

    make soak                      # 10 minutes
    make soak SOAK_ARGS="--duration-s 300"
"""

from __future__ import annotations

import argparse
import itertools
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import redis

from ridepulse.auth import mint_token
from tests.support.processes import Platform

SERVICES = ("ingest", "matching", "matching-geo", "eta", "pricing", "dashboard", "janitor")
CENTRE = (37.7793, -122.4193)
MB = 1024 * 1024


# Streams are bounded by design, not by eviction: telemetry by age (30 s), rides by
# ride_stream_retention_s (set short here), health by a 10,000-entry cap that takes about
# 45 minutes of heartbeats to reach. Their memory is shown apart so a stream still filling to
# its bound is not mistaken for a leak in the projections, and vice versa.
STREAMS = ("rp:{sf}:telemetry", "rp:{sf}:rides", "rp:health", "rp:dead-letters")


@dataclass
class Sample:
    t_s: float
    used_memory: int
    stream_memory: int
    stream_lengths: dict[str, int]
    keys: int
    drivers_known: int
    rss: dict[str, int] = field(default_factory=dict)

    @property
    def rest(self) -> int:
        """Everything but the streams: projections, indexes, sets, server overhead."""
        return self.used_memory - self.stream_memory


def service_rss(platform: Platform) -> dict[str, int]:
    rss: dict[str, int] = {}
    for proc in platform.descendants():
        try:
            cmd = proc.cmdline()
            if "run" in cmd and cmd[-1] in SERVICES:
                rss[cmd[-1]] = rss.get(cmd[-1], 0) + proc.memory_info().rss
        except psutil.Error:
            continue
    return rss


def sample(platform: Platform, client: redis.Redis, started: float) -> Sample:
    info = client.info("memory")
    stream_memory = sum(int(client.memory_usage(k) or 0) for k in STREAMS)
    return Sample(
        t_s=time.monotonic() - started,
        used_memory=int(info["used_memory"]),
        stream_memory=stream_memory,
        stream_lengths={k: int(client.xlen(k)) for k in STREAMS},
        keys=int(client.dbsize()),
        drivers_known=int(client.hlen("rp:{sf}:drivers:status")),
        rss=service_rss(platform),
    )


class Fleet:
    """`active` drivers alive at once, each replaced by a new id after `lifetime_s`."""

    def __init__(self, api: httpx.Client, secret: str, active: int, lifetime_s: float) -> None:
        self.api, self.secret = api, secret
        self.lifetime_s = lifetime_s
        self.rng = random.Random(42)
        self.ids = (f"soak-{n}" for n in itertools.count())
        self.born: dict[str, float] = {}
        self.fleet_auth = {"Authorization": f"Bearer {mint_token(secret, 'fleet', 'soak')}"}
        now = time.monotonic()
        for i in range(active):  # staggered, so drivers leave a few at a time
            self.join(now - lifetime_s * i / active)
        self.departed = 0

    def join(self, born: float) -> None:
        driver = next(self.ids)
        self.born[driver] = born
        self.ping([driver])
        token = mint_token(self.secret, "driver", driver)
        self.api.put(
            f"/v1/drivers/{driver}/status",
            json={"status": "available"},
            headers={"Authorization": f"Bearer {token}"},
        )

    def ping(self, drivers: list[str]) -> None:
        now_ms = int(time.time() * 1000)
        pings = [
            {
                "driver_id": d,
                "lat": CENTRE[0] + self.rng.uniform(-0.02, 0.02),
                "lon": CENTRE[1] + self.rng.uniform(-0.02, 0.02),
                "ts": now_ms,
            }
            for d in drivers
        ]
        self.api.post("/v1/telemetry", json={"pings": pings}, headers=self.fleet_auth)

    def tick(self) -> None:
        now = time.monotonic()
        for driver in [d for d, born in self.born.items() if now - born > self.lifetime_s]:
            del self.born[driver]  # gone for good: never pings again
            self.departed += 1
            self.join(now)
        self.ping(list(self.born))


def verdict(samples: list[Sample], tolerance: float) -> list[str]:
    """Growth from the second quarter to the last quarter, per series, beyond `tolerance`."""
    quarter = max(1, len(samples) // 4)
    early, late = samples[quarter : 2 * quarter], samples[-quarter:]
    names = ["valkey memory outside streams", "keys", *(f"{n} rss" for n in SERVICES)]
    problems = []
    for name in names:
        before = max(_value(s, name) for s in early)
        after = max(_value(s, name) for s in late)
        if before and after > before * (1 + tolerance):
            problems.append(f"{name} grew {before} -> {after} (+{after / before - 1:.0%})")
    return problems


def _value(s: Sample, name: str) -> int:
    if name == "valkey memory outside streams":
        return s.rest
    if name == "keys":
        return s.keys
    return s.rss.get(name.removesuffix(" rss"), 0)


def render(samples: list[Sample]) -> str:
    head = (
        f"{'t s':>6} {'used MB':>8} {'streams':>8} {'rest MB':>8} {'keys':>6} {'drivers':>8} "
        f"{'rides':>6} {'health':>6} " + " ".join(f"{n[:8]:>8}" for n in SERVICES)
    )
    lines = [head + "   (RSS MB)"]
    for s in samples:
        lines.append(
            f"{s.t_s:6.0f} {s.used_memory / MB:8.2f} {s.stream_memory / MB:8.2f} "
            f"{s.rest / MB:8.2f} {s.keys:6d} {s.drivers_known:8d} "
            f"{s.stream_lengths['rp:{sf}:rides']:6d} {s.stream_lengths['rp:health']:6d} "
            + " ".join(f"{s.rss.get(n, 0) / MB:8.1f}" for n in SERVICES)
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=600)
    parser.add_argument("--active", type=int, default=300)
    parser.add_argument("--lifetime-s", type=float, default=30)
    parser.add_argument("--sample-s", type=float, default=15)
    parser.add_argument("--evict-s", type=float, default=20)
    parser.add_argument("--tolerance", type=float, default=0.10)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="ridepulse-soak-"))
    env = {
        "RIDEPULSE_DRIVER_LOST_S": str(args.evict_s / 2),
        "RIDEPULSE_DRIVER_EVICT_S": str(args.evict_s),
        "RIDEPULSE_DRIVER_SWEEP_INTERVAL_S": "1",
        "RIDEPULSE_RETENTION_INTERVAL_S": "10",
        "RIDEPULSE_RIDE_STREAM_RETENTION_S": "60",
        "RIDEPULSE_RIDE_STREAM_TRIM_INTERVAL_S": "10",
    }
    # a background job ignores SIGINT; SIGTERM must still stop the platform it started
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    platform = Platform(data_dir, "--no-sim", env=env)
    samples: list[Sample] = []
    try:
        platform.wait_up()
        client = redis.Redis.from_url(platform.redis_url())
        secret = (data_dir / "secret").read_text().strip()
        with httpx.Client(base_url=platform.api, timeout=10) as api:
            fleet = Fleet(api, secret, args.active, args.lifetime_s)
            started = next_sample = time.monotonic()
            print(render([]), flush=True)
            while time.monotonic() - started < args.duration_s:
                tick_started = time.monotonic()
                fleet.tick()
                if tick_started >= next_sample:
                    samples.append(sample(platform, client, started))
                    print(render(samples[-1:]).splitlines()[-1], flush=True)
                    next_sample += args.sample_s
                time.sleep(max(0.0, 1.0 - (time.monotonic() - tick_started)))
        print(f"\n{fleet.departed + args.active} driver ids, {fleet.departed} departed for good")
    finally:
        platform.stop()
    print(render(samples))
    problems = verdict(samples, args.tolerance)
    for problem in problems:
        print(f"NOT FLAT: {problem}")
    print("memory level: OK" if not problems else "memory level: GROWING")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
