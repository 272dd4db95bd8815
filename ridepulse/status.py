"""`ridepulse status`: streams, groups, heartbeats and dead letters, and a health verdict."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import redis
from redis.cluster import RedisCluster

from ridepulse.keys import GlobalKeys, MarketKeys, heartbeat_owner
from ridepulse.replies import text
from ridepulse.write_refusals import EVERY_WRITE, refused_writes

LAG_UNHEALTHY = 100_000


@dataclass
class GroupStatus:
    name: str
    consumers: int
    pending: int
    lag: int | None


@dataclass
class StreamStatus:
    key: str
    length: int
    groups: list[GroupStatus]


@dataclass
class ServiceStatus:
    """One consumer's last heartbeat. A dead one's figures are None (unknown), not zeros: its
    key expired with them, and its group's backlog is in the stream table."""

    service: str
    consumer: str
    processed: int | None
    lag: int | None
    pending: int | None
    age_s: float | None
    alive: bool
    telemetry_admitted: float | None = None  # ingest's share of pings let in


@dataclass
class NodeStatus:
    """One node of a cluster, as the cluster itself sees it (CLUSTER NODES)."""

    address: str
    role: str  # primary | replica
    down: bool
    replicates: str | None  # a replica's primary


@dataclass
class Status:
    streams: list[StreamStatus] = field(default_factory=list)
    services: list[ServiceStatus] = field(default_factory=list)
    dead_letters: int = 0
    nodes: list[NodeStatus] = field(default_factory=list)
    writes_refused: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "healthy": self.healthy}


def served_markets(client: redis.Redis, prefix: str) -> list[str]:
    """The markets the server holds a ride stream of: every market a running platform serves
    (matching creates its group on it, and with it the stream, at start), whatever
    RIDEPULSE_MARKETS the operator's shell has. SCAN, which a cluster client runs on every
    primary: a market's keys live on the node of its hash tag."""
    ride_stream = re.compile(rf"{re.escape(prefix)}:\{{([^}}]+)\}}:rides")
    found = {
        match.group(1)
        for key in client.scan_iter(match=f"{prefix}:{{*}}:rides", count=1000, _type="stream")
        if (match := ride_stream.fullmatch(text(key)))
    }
    return sorted(found)


def collect_status(
    client: redis.Redis, configured: Sequence[str], prefix: str, durable_writes: bool = True
) -> Status:
    """The configured markets, then every other market the server holds streams of; whether
    the server takes writes (memory, disk, replicas, and its AOF when the live ingest's
    heartbeat says it writes durably, `durable_writes` (the shell's RIDEPULSE_DURABLE_WRITES)
    when no ingest beats); a cluster's nodes. No stream, heartbeat or dead
    letter under the prefix is a problem too: no platform there to call healthy."""
    status = Status()
    global_keys = GlobalKeys(prefix)
    beats = _heartbeats(client, global_keys)
    # an AOF off fails ride requests if the running ingest writes durably, whatever the shell
    # says: its live beat tells (RIDEPULSE_DURABLE_WRITES as ingest was started with)
    said = [b["durable_writes"] for _, _, b in beats if b and "durable_writes" in b]
    durable_writes = any(said) if said else durable_writes
    # a server refusing writes refuses heartbeats too: named first, the services may be running
    refused_for = refused_writes(client, status.problems, durable_writes)
    status.writes_refused = refused_for in EVERY_WRITE  # an AOF off takes pings and heartbeats
    if isinstance(client, RedisCluster):
        status.nodes = _cluster_nodes(client, status.problems)
    markets = list(dict.fromkeys([*configured, *served_markets(client, prefix)]))
    for market in markets:
        keys = MarketKeys(market, prefix)
        for stream in (keys.telemetry, keys.rides, keys.surge_events, keys.eta_events):
            if not client.exists(stream):
                continue
            groups = [
                GroupStatus(text(g["name"]), int(g["consumers"]), int(g["pending"]), g.get("lag"))
                for g in client.xinfo_groups(stream)
            ]
            status.streams.append(StreamStatus(stream, int(client.xlen(stream)), groups))
            for g in groups:
                if g.lag is not None and g.lag > LAG_UNHEALTHY:
                    status.problems.append(f"group {g.name} on {stream} lags {g.lag} entries")
    now_ms = time.time() * 1000
    for service, consumer, beat in beats:
        if beat is None:
            # A clean stop removes its entry; a key that expired means the service died.
            status.services.append(ServiceStatus(service, consumer, None, None, None, None, False))
            continue
        age_s = (now_ms - beat.get("time", now_ms)) / 1000
        status.services.append(
            ServiceStatus(
                service,
                consumer,
                beat["processed"],
                beat["lag"],
                beat["pending"],
                age_s,
                True,
                beat.get("telemetry_admitted"),
            )
        )
    alive = {s.service for s in status.services if s.alive}
    why = f" (Redis refuses its heartbeat: see {refused_for})" if status.writes_refused else ""
    for svc in status.services:
        if not svc.alive and svc.service not in alive:
            status.problems.append(
                f"service {svc.service} ({svc.consumer}) has no live heartbeat{why}"
            )
    for svc in status.services:
        if svc.alive and svc.telemetry_admitted is not None and svc.telemetry_admitted < 1.0:
            status.problems.append(
                f"{svc.service} ({svc.consumer}) sheds telemetry: lets in "
                f"{svc.telemetry_admitted:.0%} of pings (a group dispatch depends on lags)"
            )
    status.dead_letters = int(client.xlen(global_keys.dead_letters))
    if not status.streams and not status.services and not status.dead_letters:
        # a prefix typo, or a server no platform ever ran on, must not pass monitoring
        status.problems.append(
            f"nothing under prefix {prefix!r}: no platform has run here, or the prefix "
            "is wrong (RIDEPULSE_KEY_PREFIX)"
        )
    return status


def _heartbeats(
    client: redis.Redis, global_keys: GlobalKeys
) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Each registered consumer's service, name and last beat (None: its key expired)."""
    beats = []
    for key in sorted(text(k) for k in client.smembers(global_keys.heartbeats)):
        raw = client.get(key)
        beats.append((*heartbeat_owner(key), None if raw is None else orjson.loads(raw)))
    return beats


def _cluster_nodes(client: RedisCluster, problems: list[str]) -> list[NodeStatus]:
    """Every node as the cluster sees it. Unhealthy: a slot no node serves, a node down, and a
    primary without a live replica in a cluster that has replicas (its writes are replicated
    nowhere, and with RIDEPULSE_RIDE_REPLICA_ACKS its markets' ride requests are refused)."""
    seen: Any = client.cluster_nodes()
    info: Any = client.cluster_info()
    if text(info.get("cluster_state")) != "ok":
        problems.append("the cluster's state is not ok: some slots are served by no node")
    by_id = {detail["node_id"]: address for address, detail in seen.items()}
    nodes = []
    for address, detail in sorted(seen.items()):
        flags = set(detail["flags"].split(","))
        replica = "slave" in flags
        nodes.append(
            NodeStatus(
                address=address,
                role="replica" if replica else "primary",
                down=bool(flags & {"fail", "fail?"}) or not detail["connected"],
                replicates=by_id.get(detail["master_id"]) if replica else None,
            )
        )
    for node in nodes:
        if node.down:
            problems.append(f"cluster node {node.address} ({node.role}) is down")
    if any(n.role == "replica" for n in nodes):
        for primary in (n for n in nodes if n.role == "primary" and not n.down):
            live = [n for n in nodes if n.replicates == primary.address and not n.down]
            if not live:
                problems.append(f"primary {primary.address} has no live replica")
    return nodes


def _figure(value: int | None) -> str:
    """A table cell: "?" for a figure nobody knows (a dead consumer's), never a made-up 0."""
    return "?" if value is None else str(value)


def render(status: Status) -> str:
    lines = [
        f"{'STREAM':<40} {'LENGTH':>6}  {'GROUP':<18} {'CONSUMERS':>9} {'PENDING':>8} {'LAG':>8}"
    ]
    for stream in status.streams:
        if not stream.groups:
            lines.append(f"{stream.key:<40} {stream.length:>6}  (no groups)")
        for g in stream.groups:
            lag = "?" if g.lag is None else str(g.lag)
            lines.append(
                f"{stream.key:<40} {stream.length:>6}  {g.name:<18} "
                f"{g.consumers:>9} {g.pending:>8} {lag:>8}"
            )
    lines.append("")
    lines.append("SERVICE      CONSUMER                    PROCESSED      LAG  PENDING  LAST SEEN")
    for s in status.services:
        seen = "dead" if s.age_s is None else f"{s.age_s:.1f}s ago"
        if s.telemetry_admitted is not None and s.telemetry_admitted < 1.0:
            seen += f"  (lets in {s.telemetry_admitted:.0%} of pings)"
        processed, lag, pending = (_figure(n) for n in (s.processed, s.lag, s.pending))
        lines.append(
            f"{s.service:<12} {s.consumer:<26} {processed:>10} {lag:>8} {pending:>8}  {seen}"
        )
    if status.nodes:
        lines.append("")
        lines.append(f"{'NODE':<22} {'ROLE':<8} {'STATE':<5} REPLICATES")
        for n in status.nodes:
            state = "down" if n.down else "up"
            lines.append(f"{n.address:<22} {n.role:<8} {state:<5} {n.replicates or ''}")
    lines.append("")
    lines.append(f"dead letters: {status.dead_letters}")
    lines.append("healthy" if status.healthy else "UNHEALTHY: " + "; ".join(status.problems))
    return "\n".join(lines)
