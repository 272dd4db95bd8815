"""Form docker-compose's Valkey Cluster: the one-shot `valkey-cluster-init` of the `cluster`
profile runs `python -m ridepulse.compose_cluster valkey-1:6379 ... valkey-6:6379`.

The nodes are named by service; CLUSTER MEET wants addresses, so the names are resolved first.
Slots are dealt like `ridepulse cluster up` does (ridepulse.cluster.deal_slots): every built-in
market's hash tag on its own primary. On a later `up` the nodes remember their cluster
(nodes.conf), so it only waits for cluster_state:ok; nodes left half-formed by an init that was
stopped, holding no data, are reset and formed again. The operator's password comes from
RIDEPULSE_REDIS_PASSWORD (never argv)."""

from __future__ import annotations

import argparse
import os
import socket
import sys

from ridepulse.cluster import (
    NodeAddress,
    cluster_complete,
    form_cluster,
    holds_keys,
    reset_nodes,
    wait_cluster_ok,
)
from ridepulse.compose_acl import OPERATOR_PASSWORD_ENV
from ridepulse.markets import load_markets

BUS_PORT_OFFSET = 10_000  # Valkey's default cluster bus port: the client port + 10,000


def node_address(spec: str) -> NodeAddress:
    """`host:port` (a name or an address) → the address CLUSTER MEET accepts."""
    host, _, port = spec.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"not host:port: {spec!r}")
    return NodeAddress(socket.gethostbyname(host), int(port), int(port) + BUS_PORT_OFFSET)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ridepulse.compose_cluster")
    parser.add_argument("nodes", nargs="+", help="host:port of every node, primaries first")
    parser.add_argument("--replicas", type=int, default=1, help="replicas per primary")
    parser.add_argument("--timeout-s", type=float, default=120.0)
    parser.add_argument("--bus-port-offset", type=int, default=BUS_PORT_OFFSET)
    args = parser.parse_args(argv)
    password = os.environ.get(OPERATOR_PASSWORD_ENV, "")
    if not password:
        raise SystemExit(f"{OPERATOR_PASSWORD_ENV} is not set")
    if len(args.nodes) % (1 + args.replicas):
        raise SystemExit(f"{len(args.nodes)} nodes do not split into shards of {1 + args.replicas}")
    nodes = [node_address(spec) for spec in args.nodes]
    nodes = [NodeAddress(n.host, n.port, n.port + args.bus_port_offset) for n in nodes]
    primaries = len(nodes) // (1 + args.replicas)
    # Formed: whole now, or holding data (a restarted cluster on its way back to ok). Else a
    # first init, or one stopped mid-way (nodes met, slots half dealt), is formed from scratch.
    if cluster_complete(nodes, password, primaries * args.replicas) or holds_keys(nodes, password):
        _say("cluster already formed")
    else:
        markets = list(load_markets(only="all").by_id)
        reset_nodes(nodes, password)
        form_cluster(nodes, password, primaries, markets)
        _say(f"formed: {primaries} primaries, {args.replicas} replica(s) each")
    wait_cluster_ok(nodes, password, primaries * args.replicas, args.timeout_s)
    _say("cluster_state:ok")


if __name__ == "__main__":
    main()
