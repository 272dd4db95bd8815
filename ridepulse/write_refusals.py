"""Why a Redis server refuses every write, named first by `ridepulse status`: a server past its
maxmemory (OOM), one that cannot persist (MISCONF: a full disk under its AOF, a failed RDB
snapshot) or one with fewer good replicas than `min-replicas-to-write` (NOREPLICAS) refuses
heartbeats too, so its services look dead while they run on, retrying."""

from __future__ import annotations

from typing import Any

import redis
from redis.cluster import RedisCluster

from ridepulse.replies import text


def refused_writes(client: redis.Redis, problems: list[str]) -> str | None:
    """What makes a server (any primary of a cluster) refuse writes, "disk", "memory" or
    "replicas", each server's cause added to `problems`; None when every server takes writes."""
    cause = None
    for address, node in _primaries(client):
        persistence: dict[str, Any] = node.info("persistence")
        snapshot_failed = text(persistence.get("rdb_last_bgsave_status", "ok")) != "ok"
        problem = persistence_problem(
            address, persistence, snapshot_failed and _stops_writes_on_failed_snapshot(node)
        )
        if problem is not None:
            cause = "disk"
        elif problem := memory_problem(address, node.info("memory")):
            cause = cause or "memory"
        elif problem := replicas_problem(
            address, node.info("replication"), _min_replicas_to_write(node)
        ):
            cause = cause or "replicas"
        if problem:
            problems.append(problem)
    return cause


def persistence_problem(
    address: str, persistence: dict[str, Any], stops_on_failed_snapshot: bool
) -> str | None:
    """What INFO persistence says of a write to disk that failed and now refuses writes: an AOF
    write (while the AOF is on), or an RDB snapshot (with save points and
    stop-writes-on-bgsave-error, Redis's defaults; `ridepulse up` sets no save points)."""
    if int(persistence.get("aof_enabled", 0)) and (
        text(persistence.get("aof_last_write_status", "ok")) != "ok"
    ):
        failed = "cannot write its AOF"
    elif stops_on_failed_snapshot and text(persistence.get("rdb_last_bgsave_status")) != "ok":
        failed = "failed its last RDB snapshot"
    else:
        return None
    return (
        f"Redis{address} {failed}: it refuses every write (MISCONF), so ride requests and "
        "pings get 503; free disk space under its data dir (its log says why)"
    )


def memory_problem(address: str, memory: dict[str, Any]) -> str | None:
    """A server past its maxmemory refuses every write (the embedded server and compose run
    `noeviction`), rides and heartbeats alike."""
    used, limit = int(memory.get("used_memory", 0)), int(memory.get("maxmemory", 0))
    if not limit or used < limit:
        return None
    return (
        f"Redis{address} is at its maxmemory ({used} of {limit} bytes): it refuses every "
        "write, so ride requests and pings get 503; free memory or raise maxmemory"
    )


def replicas_problem(address: str, replication: dict[str, Any], min_replicas: int) -> str | None:
    """A primary set to write only with `min_replicas` good replicas (acked within
    min-replicas-max-lag) refuses every write while it has fewer: a replica down or lagging.
    INFO shows the count only while the rule is on (a max lag of 0 turns it off, writes go
    through): no count, no refusal."""
    if "min_slaves_good_slaves" not in replication:
        return None
    good = int(replication["min_slaves_good_slaves"])
    if not min_replicas or good >= min_replicas:
        return None
    return (
        f"Redis{address} has {good} good replica(s) of the {min_replicas} its "
        "min-replicas-to-write asks for: it refuses every write (NOREPLICAS), so ride requests "
        "and pings get 503; bring a replica back or lower min-replicas-to-write"
    )


def _min_replicas_to_write(node: redis.Redis) -> int:
    try:
        reply: Any = node.config_get("min-replicas-to-write")
    except redis.ResponseError:
        return 0  # CONFIG refused (a managed server): its writes tell, not this check
    return int(text(reply.get("min-replicas-to-write", 0)) or 0)


def _stops_writes_on_failed_snapshot(node: redis.Redis) -> bool:
    try:
        save: Any = node.config_get("save")
        stop: Any = node.config_get("stop-writes-on-bgsave-error")
    except redis.ResponseError:
        return True  # CONFIG refused (a managed server): assume Redis's defaults
    return (
        bool(text(save.get("save", "")).strip())
        and text(stop.get("stop-writes-on-bgsave-error", "yes")) == "yes"
    )


def _primaries(client: redis.Redis) -> list[tuple[str, redis.Redis]]:
    """The server, or every primary of a cluster that answers (_cluster_nodes reports the
    others), with the address a problem names."""
    if not isinstance(client, RedisCluster):
        return [("", client)]
    found = []
    for node in client.get_primaries():
        connection = client.get_redis_connection(node)
        try:
            connection.ping()
        except (redis.ConnectionError, redis.TimeoutError):  # down, or frozen
            continue
        found.append((f" {node.name}", connection))
    return found
