"""Why a Redis server refuses writes, named by `ridepulse status` and by ingest's /readyz: a
server past its maxmemory (OOM), one that cannot persist (MISCONF: a full disk under its AOF, a
failed RDB snapshot) or one with fewer good replicas than `min-replicas-to-write` (NOREPLICAS)
refuses heartbeats too, so its services look dead while they run on, retrying; one with its AOF
off refuses the WAITAOF a durable ride request waits on (RIDEPULSE_DURABLE_WRITES), so every
ride request gets 503 `not_durable` while pings and heartbeats go through."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.exceptions import ClusterError, OutOfMemoryError, RedisError

from ridepulse.bus.faults import reply_code
from ridepulse.replies import text

# The INFO sections a verdict reads: ingest's ACL user may run INFO of these only.
INFO_SECTIONS = ("persistence", "memory", "replication")
# What CONFIG GET a verdict reads, when the user may (the operator); a service user may not.
CONFIG_NAMES = ("save", "stop-writes-on-bgsave-error", "min-replicas-to-write")
# The reply codes of a write Redis refused, by the cause `refused_writes` names.
REFUSAL_REPLIES = {"MISCONF": "disk", "NOREPLICAS": "replicas"}
# The causes that refuse every write (heartbeats too), not only a durable ride's WAITAOF.
EVERY_WRITE = frozenset(("disk", "memory", "replicas"))
# The maxmemory policies under which a server at its maxmemory refuses a write; the others
# (allkeys-*) evict a key and take it. volatile-*: the streams and rides have no TTL to evict.
REFUSING_POLICIES = ("noeviction", "volatile-")

REDIS_WRITES_REFUSED = Counter(
    "rp_redis_writes_refused_total",
    "Requests answered 503 because Redis refused their write (memory, disk, replicas) or the "
    "WAITAOF of a durable ride request (aof)",
    ["reason"],
)


def refusal_reason(exc: BaseException) -> str | None:
    """The cause of a write Redis refused ("memory", "disk", "replicas"), None for other errors."""
    if isinstance(exc, OutOfMemoryError):  # redis-py takes the OOM code off its message
        return "memory"
    if not isinstance(exc, redis.ResponseError):
        return None
    return REFUSAL_REPLIES.get(reply_code(exc))


def refused_writes(
    client: redis.Redis, problems: list[str], durable_writes: bool = True
) -> str | None:
    """What makes a server (any primary of a cluster) refuse writes, "disk", "memory",
    "replicas" or "aof" (its AOF off while `durable_writes`), each server's cause added to
    `problems`; None when every server takes them. Run as the operator: it reads CONFIG."""
    verdicts = []
    for address, node in _primaries(client):
        info = {section: node.info(section) for section in INFO_SECTIONS}
        try:
            config: Any = node.config_get(*CONFIG_NAMES)
        except redis.ResponseError:  # CONFIG refused (a managed server): Redis's defaults
            rules = WriteRules(stops_on_failed_snapshot=True, min_replicas=1)
        else:
            rules = WriteRules.from_config(config)
        verdicts.append(node_refusal(address, info, rules, durable_writes))
    return _gathered(verdicts, problems)


@dataclass(frozen=True)
class NodeVerdicts:
    """What ingest learnt of the primaries: each refusing one's cause and line, how many
    answered, and why one's INFO could not be read (None when all could)."""

    refusals: list[tuple[str, str]]
    answered: int
    # an INFO refused (NOPERM: a server still on an ACL file older than ingest's grants):
    # that server's verdict is unknown, neither a refusal nor a pass
    unreadable: str | None = None

    @property
    def every_primary_refuses(self) -> bool:
        """Every primary that answered refuses every write: no market's ride or ping can be
        taken. One primary of a cluster refusing fails its markets only; an AOF off fails
        durable ride requests only (pings, quotes and sockets go on)."""
        every_write = [cause for cause, _ in self.refusals if cause in EVERY_WRITE]
        return self.answered > 0 and len(every_write) == self.answered


async def node_refusals(client: aioredis.Redis, durable_writes: bool) -> NodeVerdicts:
    """Each refusing server's cause and line, for a service user (ingest): INFO only, never
    CONFIG (it holds the server's passwords, and each refusal would fill the ACL LOG). So a
    failed RDB snapshot is not taken to stop writes (`ridepulse up` sets no save points; a
    failed manual BGSAVE must not take ingest out of rotation): `ridepulse status` names it.
    Each primary is asked on its own: one that does not answer (a shard down, which
    cluster-require-full-coverage no lets the others outlive) is skipped, not a refusal (the
    requests of its markets fail on their own, and /readyz's PING names a server away)."""
    rules = WriteRules(stops_on_failed_snapshot=False, min_replicas=1)
    primaries = await _async_primaries(client)
    answers = await asyncio.gather(
        *(_sections(client, target) for _, target in primaries), return_exceptions=True
    )
    refusals: list[tuple[str, str]] = []
    answered, unreadable = 0, None
    for (address, _), answer in zip(primaries, answers, strict=True):
        if isinstance(answer, redis.ResponseError) and not isinstance(answer, ClusterError):
            unreadable = unreadable or f"Redis{address}: {type(answer).__name__}: {answer}"
        elif isinstance(answer, RedisError | OSError):
            continue  # unreachable: not a write refusal
        elif isinstance(answer, BaseException):
            raise answer
        else:
            answered += 1
            if verdict := node_refusal(address, answer, rules, durable_writes):
                refusals.append(verdict)
    return NodeVerdicts(refusals, answered, unreadable)


async def _sections(client: aioredis.Redis, target: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {section: await client.info(section, **target) for section in INFO_SECTIONS}


@dataclass(frozen=True)
class WriteRules:
    """What of a server's CONFIG decides whether it refuses writes."""

    stops_on_failed_snapshot: bool  # save points set and stop-writes-on-bgsave-error yes
    # min-replicas-to-write; unknown, 1: INFO shows the good-replica count only while it is on
    min_replicas: int

    @classmethod
    def from_config(cls, config: dict[Any, Any]) -> WriteRules:
        settings = {text(k): text(v) for k, v in config.items()}
        return cls(
            stops_on_failed_snapshot=bool(settings.get("save", "").strip())
            and settings.get("stop-writes-on-bgsave-error", "yes") == "yes",
            min_replicas=int(settings.get("min-replicas-to-write") or 0),
        )


def node_refusal(
    address: str, info: dict[str, dict[str, Any]], rules: WriteRules, durable_writes: bool
) -> tuple[str, str] | None:
    """One server's cause and line from its INFO sections, or None when it takes writes."""
    persistence = info["persistence"]
    snapshot_failed = text(persistence.get("rdb_last_bgsave_status", "ok")) != "ok"
    stopped = snapshot_failed and rules.stops_on_failed_snapshot
    if problem := persistence_problem(address, persistence, stopped):
        return "disk", problem
    if problem := memory_problem(address, info["memory"]):
        return "memory", problem
    if problem := replicas_problem(address, info["replication"], rules.min_replicas):
        return "replicas", problem
    if problem := aof_problem(address, persistence, durable_writes):
        return "aof", problem
    return None


def _gathered(verdicts: list[tuple[str, str] | None], problems: list[str]) -> str | None:
    """Every server's line into `problems`; the cause named is a disk's first, then the first
    that refuses every write (heartbeats too), then an AOF off."""
    found = [v for v in verdicts if v is not None]
    problems.extend(problem for _, problem in found)
    causes = [cause for cause, _ in found]
    every_write = [cause for cause in causes if cause in EVERY_WRITE]
    if "disk" in causes:
        return "disk"
    first = every_write or causes
    return first[0] if first else None


def aof_problem(address: str, persistence: dict[str, Any], durable_writes: bool) -> str | None:
    """A server with its AOF off (Valkey's and Redis's default) refuses WAITAOF, which a durable
    ride request waits on: every ride request is a 503 while pings and heartbeats go through."""
    if not durable_writes or int(persistence.get("aof_enabled", 0)):
        return None
    return (
        f"Redis{address} has its AOF off (appendonly no) while RIDEPULSE_DURABLE_WRITES is on: it "
        "refuses WAITAOF, so every ride request gets 503 not_durable; turn the AOF on "
        "(CONFIG SET appendonly yes, and appendonly yes in its config file) or set "
        "RIDEPULSE_DURABLE_WRITES=false"
    )


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
    """A server past its maxmemory refuses every write under `noeviction` (the embedded server
    and compose run it) or a `volatile-*` policy, rides and heartbeats alike; under `allkeys-*`
    it evicts keys and takes the write."""
    used, limit = int(memory.get("used_memory", 0)), int(memory.get("maxmemory", 0))
    policy = text(memory.get("maxmemory_policy", "noeviction"))
    if not limit or used < limit or not policy.startswith(REFUSING_POLICIES):
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


async def _async_primaries(client: aioredis.Redis) -> list[tuple[str, dict[str, Any]]]:
    """The server, or every primary of a cluster (its commands sent with `target_nodes`), with
    the address a problem names. A primary down: the ride requests of its markets fail with a
    connection error that ingest answers 503; node_refusals skips it."""
    if not isinstance(client, AsyncRedisCluster):
        return [("", {})]
    await client.initialize()  # a no-op once the slots are known
    return [(f" {node.name}", {"target_nodes": node}) for node in client.get_primaries()]
