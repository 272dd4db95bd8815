"""Figure 3: the telemetry consumer, pings/s in one process — matching's geo-index update
(ConsumerRuntime, burst mode, batch handler) vs a per-message FastStream subscriber doing the
same update. Each repetition runs in a fresh process on fresh keys; repetitions interleave."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from loadtests.bench.measure import Measure, interleave
from loadtests.bench.servers import module_argv, run_json_child
from ridepulse.keys import MarketKeys


@dataclass(frozen=True)
class ConsumerPlan:
    reps: int
    ours_pings: int = 300_000  # ~5 s at the measured rate; one XREADGROUP COUNT 500 batch
    peer_pings: int = 10_000  # ~5 s at the peer's rate
    entry_pings: int = 1000


def ours(
    url: str,
    fill_url: str,
    prefix: str,
    plan: ConsumerPlan,
    pings: int | None = None,
    profile_to: Path | None = None,
) -> dict[str, float]:
    argv = module_argv(
        "loadtests.bench.consumers",
        url=url,
        fill_url=fill_url,
        prefix=prefix,
        pings=pings or plan.ours_pings,
        entry_pings=plan.entry_pings,
    )
    return run_json_child(argv, 300, profile_to)


def _server_cpu_s(admin: redis.Redis) -> float:
    cpu: Any = admin.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def _command_seconds(admin: redis.Redis) -> dict[str, float]:
    """Seconds Valkey spent in each command of the geo update since the last CONFIG RESETSTAT
    (a script's own commands are counted twice: on their own and inside EVALSHA)."""
    stats: Any = admin.info("commandstats")
    wanted = ("evalsha", "geoadd", "hset", "zadd", "zmscore", "hmget", "xreadgroup", "xack", "xadd")
    found = [c for c in wanted if f"cmdstat_{c}" in stats]
    return {f"valkey_{c}_s": round(stats[f"cmdstat_{c}"]["usec"] / 1e6, 3) for c in found}


def drop_keys(admin: redis.Redis, prefix: str) -> None:
    k = MarketKeys("sf", prefix)
    peer_stream = f"{prefix}:{{sf}}:fs-telemetry"
    admin.delete(
        k.telemetry, k.drivers_geo, k.drivers_seen, k.positions, k.driver_statuses, peer_stream
    )


def _checked(name: str, result: dict[str, float]) -> tuple[float, dict[str, float]]:
    """A repetition's rate; a contender that indexed fewer drivers than it read is broken."""
    if result["indexed"] != result["pings"]:
        raise RuntimeError(
            f"{name} indexed {result['indexed']:.0f} of {result['pings']:.0f} drivers"
        )
    return result["pings"] / result["seconds"], result


def consumer_figure(
    url: str, admin_url: str, key_prefix: str, admin: redis.Redis, plan: ConsumerPlan
) -> tuple[Measure, Measure]:
    """Ours consumes as matching-geo (`url`: its own ACL user) from a backlog written through
    `admin_url`; the peer, not one of our services, runs on `admin_url` throughout. Every run is
    under the server's own prefix, which matching-geo's ACL patterns name (docs/security.md);
    drop_keys empties it after each."""

    def run_ours() -> tuple[float, dict[str, float]]:
        admin.config_resetstat()
        cpu_before = _server_cpu_s(admin)
        result = ours(url, admin_url, key_prefix, plan)
        result["valkey_cpu_s"] = round(_server_cpu_s(admin) - cpu_before, 3)
        return _checked("matching", result | _command_seconds(admin))

    def run_peer() -> tuple[float, dict[str, float]]:
        argv = module_argv(
            "loadtests.bench.peers.faststream_geo",
            url=admin_url,
            prefix=key_prefix,
            pings=plan.peer_pings,
        )
        return _checked("FastStream", run_json_child(argv, 300))

    mine = Measure("matching geo consumer", "pings/s")
    peer = Measure("FastStream per-message subscriber", "pings/s")
    interleave(
        [(mine, run_ours), (peer, run_peer)], plan.reps, lambda: drop_keys(admin, key_prefix)
    )
    return mine, peer
