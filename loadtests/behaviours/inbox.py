"""What a driver app knows from the server: its open offer and its assigned ride.

Fed either by polling `GET /v1/drivers/{id}` (HTTP mode) or by WebSocket pushes (WS mode), so the
DriverUser decides the same way whichever channel carries the news.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REMEMBERED_ANSWERS = 64  # enough to never answer one offer twice, small enough to stay flat
# Driver statuses in which the driver resource's `ride_id` is an assigned ride (when `offered`,
# it names the offer, which arrives separately in `offer`).
ASSIGNED_STATUSES = frozenset({"en_route", "on_trip"})
LOSING_EVENTS = {"ride.cancelled", "ride.unmatched", "ride.expired", "ride.completed"}


@dataclass(frozen=True, slots=True)
class Offer:
    ride_id: str
    expires_at: int | None = None


class DriverInbox:
    def __init__(self) -> None:
        self.offer: Offer | None = None
        self.ride_id: str | None = None
        self.status: str | None = None
        self.lost_rides: set[str] = set()
        self._answered: list[str] = []
        self._finished: list[str] = []

    def apply_snapshot(self, body: dict[str, Any]) -> None:
        """The driver resource:
        {driver_id, status, ride_id, offer: {ride_id, expires_at} | null, ...}."""
        self.status = body.get("status") if isinstance(body.get("status"), str) else self.status
        ride_id = body.get("ride_id")
        assigned = self.status in ASSIGNED_STATUSES and isinstance(ride_id, str) and ride_id
        self.ride_id = ride_id if assigned and ride_id not in self._finished else None
        offer = body.get("offer")
        if isinstance(offer, dict) and isinstance(offer.get("ride_id"), str):
            expires = offer.get("expires_at")
            self.offer = Offer(offer["ride_id"], expires if isinstance(expires, int) else None)
        else:
            self.offer = None

    def apply_message(self, message: dict[str, Any]) -> None:
        """A pushed event:
        {"type": "ride.offered" | "ride.matched" | "ride.cancelled" | ..., ...}."""
        kind, ride_id = message.get("type"), message.get("ride_id")
        if not isinstance(ride_id, str):
            return
        if kind == "ride.offered":
            expires = message.get("expires_at")
            self.offer = Offer(ride_id, expires if isinstance(expires, int) else None)
        elif kind == "ride.matched":
            self.assign(ride_id)
        elif kind in LOSING_EVENTS:
            if self.offer is not None and self.offer.ride_id == ride_id:
                self.offer = None
            if kind != "ride.completed":
                self.lost_rides.add(ride_id)
            if self.ride_id == ride_id:
                self.ride_id = None

    def take_offer(self) -> Offer | None:
        """The open offer, once: an answered offer is never handed out again."""
        offer = self.offer
        if offer is None or offer.ride_id in self._answered:
            return None
        self._answered.append(offer.ride_id)
        del self._answered[:-REMEMBERED_ANSWERS]
        self.offer = None
        return offer

    def assign(self, ride_id: str) -> None:
        """Our accept succeeded: this ride is ours until the server says otherwise."""
        self.ride_id = ride_id
        self.lost_rides.discard(ride_id)
        if ride_id in self._finished:
            self._finished.remove(ride_id)

    def lost(self, ride_id: str) -> bool:
        """True once the server has taken `ride_id` away from us (rider cancelled, expired...)."""
        return ride_id in self.lost_rides or self.ride_id != ride_id

    def forget(self, ride_id: str) -> None:
        """We are done with `ride_id`: a lagging snapshot that still names it is not news."""
        self.lost_rides.discard(ride_id)
        self._finished.append(ride_id)
        del self._finished[:-REMEMBERED_ANSWERS]
        if self.ride_id == ride_id:
            self.ride_id = None
