"""Moving one slot to another primary by the operator's procedure of docs/scaling.md: SETSLOT
IMPORTING on the target, MIGRATING on the source, GETKEYSINSLOT + MIGRATE in batches, then SETSLOT
NODE on every primary."""

from __future__ import annotations

import time
from typing import Any

import redis


def _node(port: int, password: str) -> Any:
    """A plain client of one node (redis-py's execute_command is untyped)."""
    return redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=10)


def migrate_slot(
    slot: int,
    source_port: int,
    target_port: int,
    primary_ports: list[int],
    password: str,
    *,
    batch: int = 10,
    pause_s: float = 0.05,
) -> int:
    """Move `slot` from the primary on `source_port` to the one on `target_port`, `batch` keys
    at a time with `pause_s` between batches (a slow, busy migration); the keys moved."""
    source, target = _node(source_port, password), _node(target_port, password)
    try:
        source_id = source.execute_command("CLUSTER", "MYID").decode()
        target_id = target.execute_command("CLUSTER", "MYID").decode()
        target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        moved = 0
        while keys := source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch):
            source.execute_command(
                "MIGRATE", "127.0.0.1", target_port, "", 0, 10_000, "AUTH", password, "KEYS", *keys
            )
            moved += len(keys)
            time.sleep(pause_s)  # the pace of an operator's batches, not a wait on a condition
        # the target first, so the source's MOVED never points at a node that still refuses
        for port in [target_port, source_port, *set(primary_ports) - {source_port, target_port}]:
            with _node(port, password) as node:
                node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        return moved
    finally:
        source.close()
        target.close()
