"""Pending changes of a keyed collection (drivers, rides, surge cells) between two deltas."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Item = dict[str, Any]


@dataclass(slots=True)
class Changes:
    """Upserts and removes since the last delta; a later change of a key replaces an earlier one."""

    upsert: dict[str, Item] = field(default_factory=dict)
    remove: set[str] = field(default_factory=set)

    def put(self, key: str, item: Item) -> None:
        self.remove.discard(key)
        self.upsert[key] = item

    def drop(self, key: str) -> None:
        self.upsert.pop(key, None)
        self.remove.add(key)

    def __bool__(self) -> bool:
        return bool(self.upsert or self.remove)

    def take(self) -> dict[str, Any] | None:
        """The delta part {"upsert": [...], "remove": [...]} in key order, or None; then empty."""
        if not self:
            return None
        part = {
            "upsert": [self.upsert[k] for k in sorted(self.upsert)],
            "remove": sorted(self.remove),
        }
        self.upsert, self.remove = {}, set()
        return part


def sync_into(current: dict[str, Item], new: Mapping[str, Item], changes: Changes) -> None:
    """Make `current` equal `new`, recording only what differs."""
    for key in [k for k in current if k not in new]:
        del current[key]
        changes.drop(key)
    for key, item in new.items():
        if current.get(key) != item:
            current[key] = item
            changes.put(key, item)
