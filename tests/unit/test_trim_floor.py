"""The trim floor when a group's pending entries are acked between XINFO GROUPS and XPENDING
(seen in a benchmark run: the janitor crashed on `min` = None). A stub server answers the two
reads as a real one does in that interleaving; the real-server cases are in
tests/integration/test_bus_trimming.py."""

from __future__ import annotations

import asyncio
from typing import Any

from ridepulse.bus.trimming import safe_trim_floor


class AckedMeanwhile:
    """XINFO GROUPS still counts one pending entry; by XPENDING it has been acked."""

    async def xinfo_groups(self, stream: str) -> list[dict[str, Any]]:
        return [
            {"name": b"matching", "pending": 1, "last-delivered-id": b"1700000000500-0"},
            {"name": b"eta", "pending": 0, "last-delivered-id": b"1700000000900-0"},
        ]

    async def xpending(self, stream: str, group: bytes) -> dict[str, Any]:
        return {"pending": 0, "min": None, "max": None, "consumers": []}


def test_a_pending_entry_acked_between_the_reads_leaves_the_last_delivered_floor() -> None:
    floor = asyncio.run(safe_trim_floor(AckedMeanwhile(), "rp:{sf}:rides"))  # type: ignore[arg-type]
    assert floor == "1700000000500-0"
