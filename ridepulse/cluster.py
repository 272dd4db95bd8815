"""A local Valkey Cluster from the embedded binary: `ridepulse cluster up`.

N primaries with R replicas each, every node on loopback with AOF and the same ACL file (ACL
users live per node, DESIGN §11). The cluster is formed with plain commands (CLUSTER
ADDSLOTSRANGE, MEET, REPLICATE), so no `valkey-cli` is needed. Slots are dealt so that each
market's hash tag lands on its own primary while there are primaries to spare: markets spread
over shards instead of meeting on one by the luck of CRC16. A data dir that already holds a
formed cluster is restarted as it is (every node reloads its nodes.conf and its AOF)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

from ridepulse.acl import redis_url
from ridepulse.errors import RedisUnavailable
from ridepulse.logs import get_logger
from ridepulse.redis_server import EmbeddedRedis, _password, free_port
from ridepulse.supervisor import StartInterrupted

SLOTS = 16384
# Short in development so a killed primary's replica is promoted within a few seconds; production
# clusters keep Valkey's 15 s default.
NODE_TIMEOUT_MS = 2000
# A restarted node has this long to answer PING, or it is killed and tried again later.
REVIVE_READY_TIMEOUT_S = 30.0
# Restarts that keep failing (its port taken by another process, a full disk) are tried again
# at doubling intervals up to this one, for as long as the cluster runs.
REVIVE_RETRY_CAP_S = 60.0
# What a restarted node's readiness PING may wait: the loop asking it is a watch loop.
REVIVE_PROBE_TIMEOUT_S = 0.5
# Valkey's default (yes) turns a shard with no node left into cluster_state:fail on every node:
# every market down for one. Markets spread over shards so that one shard down is one market
# down: the others go on serving their slots (docker-compose.yml's nodes pass the same).
FULL_COVERAGE_ARGS = ("--cluster-require-full-coverage", "no")


def market_slot(market_id: str) -> int:
    """Every key of a market carries `{market}`: this is the slot all of them hash to."""
    return key_slot(("{" + market_id + "}").encode())


def deal_slots(primaries: int, markets: Sequence[str]) -> list[int]:
    """The owner (primary index) of every slot: even contiguous ranges, then each market's slot
    moved to a primary that holds no market yet, while one is left."""
    owner = [slot * primaries // SLOTS for slot in range(SLOTS)]
    holding: set[int] = set()
    for market in markets:
        slot = market_slot(market)
        if owner[slot] in holding:
            free = [p for p in range(primaries) if p not in holding]
            if free:
                owner[slot] = free[0]
        holding.add(owner[slot])
    return owner


def slot_ranges(owner: list[int], primary: int) -> list[tuple[int, int]]:
    """The slots of one primary as inclusive (start, end) runs, for CLUSTER ADDSLOTSRANGE."""
    ranges: list[tuple[int, int]] = []
    for slot, who in enumerate(owner):
        if who != primary:
            continue
        if ranges and ranges[-1][1] == slot - 1:
            ranges[-1] = (ranges[-1][0], slot)
        else:
            ranges.append((slot, slot))
    return ranges


@dataclass(frozen=True, slots=True)
class NodeAddress:
    host: str
    port: int
    bus_port: int


def _connect(node: NodeAddress, password: str) -> redis.Redis:
    """A client of one node, to use as a context manager (closed on leaving it)."""
    return redis.Redis(host=node.host, port=node.port, password=password, socket_timeout=5)


def never() -> bool:
    return False


def form_cluster(
    nodes: Sequence[NodeAddress],
    password: str,
    primaries: int,
    markets: Sequence[str],
    should_stop: Callable[[], bool] = never,
) -> None:
    """Make one cluster of empty nodes with plain commands (no `valkey-cli`): the first
    `primaries` nodes get the slots dealt by `deal_slots`, the rest replicate them in turn."""
    owner = deal_slots(primaries, markets)
    for index, node in enumerate(nodes[:primaries]):
        with _connect(node, password) as client:
            for start, end in slot_ranges(owner, index):
                client.cluster("ADDSLOTSRANGE", start, end)
    with _connect(nodes[0], password) as seed:
        for node in nodes[1:]:
            seed.cluster("MEET", node.host, node.port, node.bus_port)
    _wait_all_known(nodes, password, timeout_s=30.0, should_stop=should_stop)
    for index, node in enumerate(nodes[primaries:]):
        with _connect(nodes[index % primaries], password) as primary:
            primary_id = primary.cluster("MYID")
        with _connect(node, password) as client:
            client.cluster("REPLICATE", primary_id)


def _wait_all_known(
    nodes: Sequence[NodeAddress],
    password: str,
    timeout_s: float,
    should_stop: Callable[[], bool] = never,
) -> None:

    def all_met() -> bool:
        return all(_known_peers(node, password) == len(nodes) for node in nodes)

    _poll(all_met, timeout_s, "cluster nodes did not meet", should_stop)


def _known_peers(node: NodeAddress, password: str) -> int:
    with _connect(node, password) as client:
        peers: Any = client.cluster("NODES")
    return sum(1 for p in peers.values() if "handshake" not in p["flags"])


def _poll(
    done: Callable[[], bool],
    timeout_s: float,
    failure: str,
    should_stop: Callable[[], bool] = never,
) -> None:
    """Until `done()`, asked every 0.1 s; RedisUnavailable("<failure> within Ns") after;
    StartInterrupted as soon as `should_stop()`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if should_stop():
            raise StartInterrupted("stopped while the cluster formed")
        if done():
            return
        time.sleep(0.1)
    raise RedisUnavailable(f"{failure} within {timeout_s:.0f}s")


def holds_keys(nodes: Sequence[NodeAddress], password: str) -> bool:
    """Whether any node stores a key: a cluster that served data, never to be reset."""
    for node in nodes:
        with _connect(node, password) as client:
            if client.dbsize():
                return True
    return False


def reset_nodes(nodes: Sequence[NodeAddress], password: str) -> None:
    """Forget what a stopped formation left (peers met, slots dealt) on nodes that hold no
    data: each starts again as a cluster of one, ready for `form_cluster`."""
    for node in nodes:
        with _connect(node, password) as client:
            client.cluster("RESET", "HARD")


def cluster_complete(nodes: Sequence[NodeAddress], password: str, replicas: int) -> bool:
    """Whether the nodes form the whole cluster now (what `wait_cluster_ok` waits for)."""
    return all(_state_ok(node, password, replicas) for node in nodes)


def wait_cluster_ok(
    nodes: Sequence[NodeAddress],
    password: str,
    replicas: int,
    timeout_s: float,
    should_stop: Callable[[], bool] = never,
) -> None:
    """Until every node says cluster_state:ok, sees every replica, and every replica is linked
    to its primary."""
    _poll(
        lambda: all(_state_ok(node, password, replicas) for node in nodes),
        timeout_s,
        "cluster_state not ok",
        should_stop,
    )


def _state_ok(node: NodeAddress, password: str, replicas: int) -> bool:
    try:
        with _connect(node, password) as client:
            info: Any = client.cluster("INFO")
            replication: Any = client.info("replication")
            peers: Any = client.cluster("NODES")
    except redis.ConnectionError:
        return False
    linked = replication.get("role") != "slave" or replication.get("master_link_status") == "up"
    # every node must see every replica, or a client seeded from it misses them
    replicas_seen = sum(1 for p in peers.values() if "slave" in p["flags"])
    return bool(info.get("cluster_state") == "ok" and linked and replicas_seen == replicas)


@dataclass
class Revival:
    """A dead node on its way back: when the next restart is due, the one in flight, if any."""

    due_at: float
    spawned_at: float | None = None
    failures: int = 0


@dataclass
class LocalCluster:
    data_dir: Path
    primaries: int = 3
    replicas: int = 0
    markets: Sequence[str] = ("sf", "nyc")
    key_prefix: str = "rp"
    node_timeout_ms: int = NODE_TIMEOUT_MS
    nodes: list[EmbeddedRedis] = field(default_factory=list)
    bus_ports: list[int] = field(default_factory=list)
    _revivals: dict[int, Revival] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The operator's URL, every node a seed: a client starts while any of them is up."""
        return redis_url(self._seeds, self.nodes[0].password, cluster=True)

    def url_for(self, service: str) -> str:
        """The URL a service connects with: its own ACL user, which every node's ACL file holds
        (the nodes share the data dir's passwords)."""
        password = self.nodes[0].service_passwords[service]
        return redis_url(self._seeds, password, service, cluster=True)

    @property
    def _seeds(self) -> str:
        """`host:port,host:port,...` of every node (`redis_client.cluster_seeds` reads it)."""
        return ",".join(node.address for node in self.nodes)

    @property
    def revive_after_s(self) -> float:
        """A dead node is restarted after twice the node timeout: its replica is promoted first."""
        return 2 * self.node_timeout_ms / 1000

    def start(
        self, timeout_s: float = 60.0, should_stop: Callable[[], bool] = never
    ) -> LocalCluster:
        """Start the nodes and form the cluster (or find it formed). `should_stop` is asked
        between the steps and while waiting: a stop ends the start with StartInterrupted. It is
        asked, not raised from a signal handler: an exception raised there lands wherever the
        signal found the process, inside a fork's logging lock callback once (Python printed
        "Exception ignored" and lost the stop)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._check_formed_size()

        def check() -> None:
            if should_stop():
                raise StartInterrupted("stopped while the cluster formed")

        try:  # an interrupted start (a stop while forming) stops the nodes started so far
            for index in range(self.primaries * (1 + self.replicas)):
                check()
                self.nodes.append(self._start_node(index))
            check()
            if not self._formed():
                reset_nodes(self._addresses(), self.nodes[0].password)
                form_cluster(
                    self._addresses(),
                    self.nodes[0].password,
                    self.primaries,
                    self.markets,
                    should_stop,
                )
            wait_cluster_ok(
                self._addresses(),
                self.nodes[0].password,
                self.primaries * self.replicas,
                timeout_s,
                should_stop,
            )
            self._formed_marker.write_text(f"{self.primaries} {self.replicas}\n")
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def _formed_marker(self) -> Path:
        return self.data_dir / "formed"

    def _check_formed_size(self) -> None:
        """A formed cluster restarts as it was formed: asked for another size, some nodes
        started and waited 60 s for a cluster_state that never came. RedisUnavailable at once,
        naming both sizes. The marker records the size; one from before it did is judged by
        the number of node dirs."""
        if not self._formed_marker.exists():
            return
        asked = f"--primaries {self.primaries} --replicas {self.replicas}"
        recorded = self._formed_marker.read_text().split()
        if len(recorded) == 2:
            formed = f"--primaries {recorded[0]} --replicas {recorded[1]}"
            if formed == asked:
                return
        else:
            nodes = sum(1 for d in self.data_dir.glob("node-*") if (d / "port").exists())
            if nodes == self.primaries * (1 + self.replicas):
                return
            formed = f"{nodes} nodes"
            asked += f" ({self.primaries * (1 + self.replicas)} nodes)"
        raise RedisUnavailable(
            f"the cluster in {self.data_dir} was formed with {formed}, not {asked}: ask for "
            "the size it was formed with, or give a new cluster another data dir"
        )

    def _formed(self) -> bool:
        """Whether a past start formed this cluster. Not whether nodes.conf exists: a node
        writes it as it starts, so a first start stopped mid-formation left a dir that never
        reached cluster_state ok again. A dir from before the marker counts as formed if it
        holds data; one without data is simply formed again."""
        return self._formed_marker.exists() or holds_keys(self._addresses(), self.nodes[0].password)

    def _start_node(self, index: int) -> EmbeddedRedis:
        node_dir = self.data_dir / f"node-{index}"
        port_file = node_dir / "port"
        # The cluster bus needs a port of its own; by default it is the port + 10,000, which a
        # random free port above 55,535 does not have, so both are chosen and kept.
        if port_file.exists():
            port, bus_port = (int(p) for p in port_file.read_text().split())
        else:
            port, bus_port = free_port(), free_port()
        password = _password(self.data_dir)
        node = EmbeddedRedis(
            node_dir,
            port=port,
            password=password,
            key_prefix=self.key_prefix,
            secrets_dir=self.data_dir,
            dies_with_parent=True,
            extra_args=(
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                str(bus_port),
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                # A replica may be promoted however long it was cut off: in development a
                # fresh promotion beats a shard that stays down.
                "--cluster-replica-validity-factor",
                "0",
                *FULL_COVERAGE_ARGS,
                "--masterauth",  # a replica syncs from its primary as the operator
                password,
            ),
        )
        node_dir.mkdir(parents=True, exist_ok=True)
        node.start()
        port_file.write_text(f"{node.port} {bus_port}")
        self.bus_ports.append(bus_port)
        return node

    def _addresses(self) -> list[NodeAddress]:
        return [
            NodeAddress("127.0.0.1", node.port, bus_port)
            for node, bus_port in zip(self.nodes, self.bus_ports, strict=True)
        ]

    def revive_dead_nodes(self, after_s: float | None = None) -> list[int]:
        """One pass of the loop that restarts dead nodes (`ridepulse up --cluster` and `ridepulse
        cluster up` both run it), on their own ports and data dirs; the indexes of the nodes that
        answer again. Never blocks for a node (it spawns, and asks on later passes) and never
        raises: a node that fails to come back is logged and tried again later, while the
        cluster serves without it.

        A dead node is restarted `after_s` (default `revive_after_s`) after it was first seen
        dead: the cluster fails over first, as it must when a machine is gone for longer than the
        node timeout; restarted at once, the node would simply resume as the primary. A primary
        that died rejoins as a replica of the node promoted in its place, so the shard has a
        replica again (what WAIT 1 needs)."""
        wait_s = self.revive_after_s if after_s is None else after_s
        revived: list[int] = []
        now = time.monotonic()
        for index, node in enumerate(self.nodes):
            revival = self._revivals.get(index)
            running = node.process is None or node.process.poll() is None
            if revival is None:
                if not running:
                    self._revivals[index] = Revival(due_at=now + wait_s)
            elif revival.spawned_at is not None:
                if self._came_back(index, node, revival, now, wait_s):
                    del self._revivals[index]
                    revived.append(index)
            elif now >= revival.due_at:
                self._respawn(index, node, revival, now, wait_s)
        return revived

    def _respawn(
        self, index: int, node: EmbeddedRedis, revival: Revival, now: float, wait_s: float
    ) -> None:
        try:
            node.spawn()
        except (OSError, RedisUnavailable) as exc:
            self._revive_failed(index, revival, now, wait_s, str(exc))
            return
        revival.spawned_at = now

    def _came_back(
        self, index: int, node: EmbeddedRedis, revival: Revival, now: float, wait_s: float
    ) -> bool:
        """Whether the restarted node answers; a failure (it exited, or is silent too long) is
        logged and the next restart scheduled."""
        assert node.process is not None and revival.spawned_at is not None
        if node.process.poll() is not None:
            self._revive_failed(index, revival, now, wait_s, node.exit_reason())
            return False
        if node.answers(timeout_s=REVIVE_PROBE_TIMEOUT_S):
            get_logger().warning("cluster.node_revived", node=index, port=node.port)
            return True
        if now - revival.spawned_at >= REVIVE_READY_TIMEOUT_S:
            node.process.kill()  # not SIGTERM and a wait: it answers nothing, and we must not wait
            node.process.wait()
            self._revive_failed(
                index, revival, now, wait_s, f"no answer within {REVIVE_READY_TIMEOUT_S:.0f}s"
            )
        return False

    def _revive_failed(
        self, index: int, revival: Revival, now: float, wait_s: float, reason: str
    ) -> None:
        revival.failures += 1
        retry_in_s = min(wait_s * 2 ** (revival.failures - 1), REVIVE_RETRY_CAP_S)
        revival.spawned_at = None
        revival.due_at = now + retry_in_s
        get_logger().error(
            "cluster.node_revive_failed",
            node=index,
            port=self.nodes[index].port,
            failures=revival.failures,
            retry_in_s=round(retry_in_s, 1),
            reason=reason,
        )

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
