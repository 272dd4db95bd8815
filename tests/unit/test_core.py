"""Markets, keys, the envelope and tokens: the shared core's pure pieces."""

from __future__ import annotations

import time

import orjson
import pytest

from ridepulse.auth import mint_token, verify_token
from ridepulse.contracts.envelope import FIELDS, Envelope, derived_event_id, new_event_id
from ridepulse.contracts.events import RideExpiredV1, RideRequestedV1
from ridepulse.contracts.registry import decode, make
from ridepulse.errors import Forbidden, InvalidEvent, OutsideServiceArea, Unauthorized
from ridepulse.keys import GlobalKeys, MarketKeys
from ridepulse.markets import load_markets

SECRET = "unit-test-secret-0123456789abcdef0123456789"


def test_point_in_san_francisco_is_located_in_the_default_market() -> None:
    assert load_markets().locate(37.7749, -122.4194).id == "sf"


def test_point_outside_every_market_is_an_explicit_error() -> None:
    with pytest.raises(OutsideServiceArea, match="outside every service area"):
        load_markets().locate(51.5, -0.12)


def test_every_market_key_carries_the_market_hash_tag() -> None:
    keys = MarketKeys("sf")
    names = [
        keys.telemetry,
        keys.rides,
        keys.ride("r1"),
        keys.driver("d1"),
        keys.drivers_geo,
        keys.idempotency("u", "k"),
        keys.surge,
        keys.speeds,
    ]
    assert all(n.startswith("rp:{sf}:") for n in names), names
    assert GlobalKeys().dead_letters == "rp:dead-letters"


def test_event_ids_are_time_ordered_and_derived_ids_are_deterministic() -> None:
    first, second = new_event_id(), new_event_id()
    assert first < second
    assert derived_event_id(first, "offer:1") == derived_event_id(first, "offer:1")
    assert derived_event_id(first, "offer:1") != derived_event_id(first, "offer:2")


def test_envelope_round_trips_with_the_same_field_set_every_time() -> None:
    event = make("ride.expired", "ride/r1", {"ride_id": "r1", "version": 3}, "unit")
    fields = event.to_fields()
    assert tuple(fields) == FIELDS
    decoded = decode(fields)
    assert decoded.id == event.id and decoded.data.model_dump() == {"ride_id": "r1", "version": 3}


def test_envelope_rejects_non_object_data() -> None:
    fields = Envelope("ride.expired", "ride/1", {}, "unit").to_fields()
    fields[b"data"] = orjson.dumps([1, 2])
    with pytest.raises(InvalidEvent, match="not a JSON object"):
        decode(fields)


def test_token_round_trip_carries_role_and_subject() -> None:
    principal = verify_token(SECRET, mint_token(SECRET, "driver", "d42"))
    assert (principal.role, principal.subject) == ("driver", "d42")
    with pytest.raises(Forbidden):
        principal.require("ops")


def test_forged_and_expired_tokens_are_refused() -> None:
    forged = mint_token("another-secret-0123456789abcdef0123456789", "ops", "mallory")
    with pytest.raises(Unauthorized, match="invalid token"):
        verify_token(SECRET, forged)
    expired = mint_token(SECRET, "rider", "u1", ttl_s=-10)
    with pytest.raises(Unauthorized, match="expired"):
        verify_token(SECRET, expired)
    assert time.time() > 0


def test_a_handler_reads_the_payload_as_the_model_it_is_written_for() -> None:
    fields = make("ride.expired", "ride/r1", {"ride_id": "r1", "version": 2}, "t").to_fields()
    event = decode(fields)
    assert event.payload(RideExpiredV1).version == 2
    assert event.payload(RideRequestedV1, RideExpiredV1).ride_id == "r1"
    with pytest.raises(InvalidEvent, match="payload is RideExpiredV1, not RideRequestedV1"):
        event.payload(RideRequestedV1)
