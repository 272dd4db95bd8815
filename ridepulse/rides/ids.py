"""Ride ids carry their market (`sf-<uuid7>`), so any service finds a ride's keys without a
global index: ingest mints them, and ingest and matching read the market back."""

from __future__ import annotations

from ridepulse.contracts.envelope import new_event_id


def new_ride_id(market: str) -> str:
    """A fresh, time-ordered ride id in `market`."""
    return f"{market}-{new_event_id()}"


def market_of_ride(ride_id: str) -> str | None:
    """The market a ride id names, or None when it is not a ride id at all."""
    market, _, rest = ride_id.partition("-")
    return market if market and rest else None
