"""Every ride the simulated riders created and have not yet seen end: what the SLO gate checks."""

from __future__ import annotations

TERMINAL_STATUSES = frozenset({"completed", "cancelled", "expired"})


class RideLedger:
    """Open rides by id, with the rider who owns them (so a check can ask as that rider or ops)."""

    def __init__(self) -> None:
        self._open: dict[str, str] = {}
        self.created = 0

    def opened(self, ride_id: str, rider_id: str) -> None:
        if ride_id not in self._open:
            self.created += 1
        self._open[ride_id] = rider_id

    def closed(self, ride_id: str) -> None:
        self._open.pop(ride_id, None)

    def open_ride_ids(self) -> list[str]:
        return sorted(self._open)

    def reset(self) -> None:
        self._open.clear()
        self.created = 0

    def __len__(self) -> int:
        return len(self._open)
