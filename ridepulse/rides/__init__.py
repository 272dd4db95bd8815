"""The ride and driver state machine, its projections and atomic Redis steps (DESIGN §5).

Shared because two services move rides: ingest (rider and driver actions) and matching (offers,
timeouts, expiry). The transition table is `state.TRANSITIONS`; `RideStore` applies it."""

from ridepulse.rides.projection import Driver, Ride
from ridepulse.rides.state import DriverStatus, RideStatus
from ridepulse.rides.store import RideStore

__all__ = ["Driver", "DriverStatus", "Ride", "RideStatus", "RideStore"]
