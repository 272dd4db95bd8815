"""The frame a driver's socket opens with: the live event's fields, or nothing."""

from __future__ import annotations

import orjson

from ingest.driver_resume import current_frame, superseded
from ridepulse.rides.projection import Ride

BASE = {
    "ride_id": "r1",
    "rider_id": "u1",
    "market": "sf",
    "pickup_lat": "37.78",
    "pickup_lon": "-122.41",
    "dropoff_lat": "37.77",
    "dropoff_lon": "-122.42",
    "requested_at": "1000",
    "deadline_at": "61000",
    "attempt": "1",
}


def _ride(**fields: str) -> Ride:
    return Ride.from_hash({**BASE, **fields})


def test_an_open_offer_is_the_offered_frame_with_its_expiry() -> None:
    ride = _ride(
        status="offered",
        version="2",
        offer_driver_id="d1",
        offer_expires_at="11000",
        pickup_eta_s="90",
    )
    frame = current_frame(ride, "d1")
    assert frame is not None
    assert orjson.loads(frame) == {
        "type": "ride.offered",
        "ride_id": "r1",
        "driver_id": "d1",
        "pickup_eta_s": 90.0,
        "expires_at": 11000,
        "attempt": 1,
        "version": 2,
    }
    assert current_frame(ride, "d2") is None  # another driver's offer


def test_an_assignment_is_its_steps_frame_and_a_finished_ride_is_nothing() -> None:
    started = _ride(status="started", version="5", driver_id="d1")
    frame = current_frame(started, "d1")
    assert frame is not None
    assert orjson.loads(frame) == {
        "type": "ride.started",
        "ride_id": "r1",
        "driver_id": "d1",
        "version": 5,
    }
    assert current_frame(_ride(status="completed", version="6", driver_id="d1"), "d1") is None


def test_a_queued_ride_event_of_that_ride_supersedes_the_stored_state() -> None:
    eta = orjson.dumps({"type": "eta.updated", "ride_id": "r1", "driver_id": "d1"})
    other = orjson.dumps({"type": "ride.offered", "ride_id": "r2", "version": 2})
    same = orjson.dumps({"type": "ride.unmatched", "ride_id": "r1", "version": 3})
    assert not superseded("r1", [eta, other])
    assert superseded("r1", [eta, same])
