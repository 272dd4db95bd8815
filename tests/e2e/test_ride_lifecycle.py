"""A real ride over HTTP, through every service's consumer group, on a real server."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ridepulse.redis_client import connect_sync
from tests.e2e.conftest import FAST_CLOCKS
from tests.support.api import DOWNTOWN, City, offset
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.e2e
DROPOFF = offset(DOWNTOWN, -2500, 800)


def place_drivers(city: City, distances_m: list[float]) -> list[str]:
    drivers = [f"d{i}" for i in range(len(distances_m))]
    for driver, north in zip(drivers, distances_m, strict=True):
        city.go_available(driver, *offset(DOWNTOWN, north, 0))
    wait_until_sync(lambda: _indexed(city, drivers), timeout_s=10, what="drivers in the geo index")
    return drivers


def _indexed(city: City, drivers: list[str]) -> bool:
    client = connect_sync(city.platform.redis_url())
    try:
        return int(client.zcard("rp:{sf}:drivers:geo")) >= len(drivers)
    finally:
        client.close()


def _groups_caught_up(city: City) -> dict[str, Any] | None:
    client = connect_sync(city.platform.redis_url(), decode_responses=True)
    try:
        groups = {g["name"]: g for g in client.xinfo_groups("rp:{sf}:rides")}
    finally:
        client.close()
    wanted = {"matching", "eta", "pricing"}
    if wanted <= set(groups) and all(
        groups[g]["lag"] == 0 and groups[g]["pending"] == 0 for g in wanted
    ):
        return groups
    return None


def test_full_ride_from_quote_to_completion_through_every_service(city: City) -> None:
    near, mid, far = place_drivers(city, [300, 1200, 2500])
    quote = city.quote_response("rider-1", DOWNTOWN, DROPOFF)
    assert quote.status_code == 200, quote.text
    assert quote.json()["fare"] > 0 and quote.json()["pickup_eta_s"] is not None
    response = city.request_ride("rider-1", DOWNTOWN, DROPOFF, quote_id=quote.json()["quote_id"])
    assert response.status_code == 202, response.text
    ride_id = response.json()["ride_id"]
    city.wait_ride(ride_id, lambda r: r["status"] == "offered", what="an offer")
    driver_view = city.http.get(f"/v1/drivers/{near}", headers=city.token("driver", near)).json()
    assert driver_view["offer"]["ride_id"] == ride_id, (
        f"nearest driver should get the offer: {driver_view}"
    )
    for action, status in [
        ("accept", "matched"),
        ("arrived", "driver_arrived"),
        ("start", "started"),
        ("complete", "completed"),
    ]:
        result = city.act(near, ride_id, action)
        assert result.status_code == 200, f"{action}: {result.text}"
        assert result.json()["status"] == status
    final = city.ride(ride_id)
    assert final["fare"] == quote.json()["fare"], "the quoted fare is honoured"
    assert [t["status"] for t in final["timeline"]] == [
        "requested",
        "offered",
        "matched",
        "driver_arrived",
        "started",
        "completed",
    ]
    assert final["pickup_eta_s"] is not None
    wait_until_sync(
        lambda: _groups_caught_up(city), timeout_s=15, what="every group to process the ride"
    )
    for other in (mid, far):
        view = city.http.get(f"/v1/drivers/{other}", headers=city.token("driver", other)).json()
        assert view["status"] == "available", f"{other} was never offered the ride: {view}"


def test_declined_offer_goes_to_the_next_nearest_driver_and_timeout_to_the_one_after(
    city: City,
) -> None:
    near, mid, far = place_drivers(city, [200, 1000, 2200])
    ride_id = city.request_ride("rider-2", DOWNTOWN, DROPOFF).json()["ride_id"]
    city.wait_ride(ride_id, lambda r: r["status"] == "offered", what="first offer")
    assert city.act(near, ride_id, "decline").status_code == 200
    city.wait_ride(
        ride_id,
        lambda r: r["status"] == "offered" and _offered_to(city, ride_id) == mid,
        what="offer to mid",
    )
    # mid ignores the offer: after the 2 s offer timeout it goes to the far driver
    city.wait_ride(
        ride_id,
        lambda r: _offered_to(city, ride_id) == far,
        timeout_s=10,
        what="offer to far after timeout",
    )
    assert city.act(far, ride_id, "accept").json()["status"] == "matched"
    # a driver whose offer of this ride is gone (declined, or expired on the server clock) is
    # told so (409); a driver never offered it cannot see it: 404, like a missing ride (11.7)
    assert city.act(near, ride_id, "accept").status_code == 409
    assert city.act(mid, ride_id, "accept").status_code == 409
    assert city.act("stranger", ride_id, "accept").status_code == 404


def _offered_to(city: City, ride_id: str) -> str | None:
    client = connect_sync(city.platform.redis_url(), decode_responses=True)
    try:
        value = client.hget(f"rp:{{sf}}:ride:{ride_id}", "offer_driver_id")
        status = client.hget(f"rp:{{sf}}:ride:{ride_id}", "status")
    finally:
        client.close()
    return value if status == "offered" and isinstance(value, str) else None


def test_ride_with_no_driver_expires_after_its_deadline(city: City) -> None:
    ride_id = city.request_ride("rider-3", DOWNTOWN, DROPOFF).json()["ride_id"]
    expired = city.wait_ride(
        ride_id, lambda r: r["status"] == "expired", timeout_s=20, what="expiry"
    )
    assert [t["status"] for t in expired["timeline"]] == ["requested", "expired"]


SILENT_RIDES = 3
SILENT_DRIVERS = 18  # more than the rides' offers before the deadline: enough to bounce on


def test_rides_offered_to_silent_drivers_expire_at_the_deadline_not_offered_past_it(
    city: City,
) -> None:
    """Drivers available but never answering (an app in the background): each ride is offered
    until its deadline, never after, and expires once the offer in flight runs out. The
    consumer used to re-offer a timed-out ride before the sweeper could expire it: rides were
    offered past their deadline and expired 20 s late, or matched late."""
    place_drivers(city, [150 + 40 * i for i in range(SILENT_DRIVERS)])
    rides = [
        city.request_ride(f"rider-silent-{i}", DOWNTOWN, DROPOFF).json()["ride_id"]
        for i in range(SILENT_RIDES)
    ]
    offer_timeout_ms = float(FAST_CLOCKS["RIDEPULSE_OFFER_TIMEOUT_S"]) * 1000
    deadline_s = float(FAST_CLOCKS["RIDEPULSE_RIDE_DEADLINE_S"])
    for ride_id in rides:
        city.wait_ride(
            ride_id,
            lambda r: r["status"] == "expired",
            timeout_s=deadline_s + 20,
            what="expiry with only silent drivers",
        )
    client = connect_sync(city.platform.redis_url())
    try:
        entries: Any = client.xrange("rp:{sf}:rides")
    finally:
        client.close()
    for ride_id in rides:
        events = [
            (f[b"type"].decode(), int(f[b"time"]), orjson.loads(f[b"data"]))
            for _, f in entries
            if orjson.loads(f[b"data"]).get("ride_id") == ride_id
        ]
        [deadline_at] = [d["deadline_at"] for t, _, d in events if t == "ride.requested"]
        offers = [at - deadline_at for t, at, _ in events if t == "ride.offered"]
        assert offers, f"{ride_id} was never offered: {events}"
        late = [ms for ms in offers if ms >= 0]
        assert not late, f"{ride_id} offered {late} ms after its deadline (offers at {offers})"
        [expired_at] = [at for t, at, _ in events if t == "ride.expired"]
        # the offer in flight at the deadline runs out, then one sweep (0.25 s) and some slack
        assert expired_at - deadline_at <= offer_timeout_ms + 1500, (
            f"{ride_id} expired {expired_at - deadline_at} ms after its deadline"
        )


def test_rider_cancel_frees_the_driver_and_driver_cancel_reoffers_the_ride(city: City) -> None:
    first, second = place_drivers(city, [300, 900])
    ride_a = city.request_ride("rider-4", DOWNTOWN, DROPOFF).json()["ride_id"]
    city.wait_ride(ride_a, lambda r: r["status"] == "offered", what="offer")
    assert city.act(first, ride_a, "accept").status_code == 200
    cancel = city.http.post(f"/v1/rides/{ride_a}/cancel", headers=city.token("rider", "rider-4"))
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
    driver = city.http.get(f"/v1/drivers/{first}", headers=city.token("driver", first)).json()
    assert driver["status"] == "available" and driver["ride_id"] is None

    ride_b = city.request_ride("rider-5", DOWNTOWN, DROPOFF).json()["ride_id"]
    city.wait_ride(ride_b, lambda r: _offered_to(city, ride_b) == first, what="offer to first")
    assert city.act(first, ride_b, "accept").status_code == 200
    dropped = city.http.post(f"/v1/rides/{ride_b}/cancel", headers=city.token("driver", first))
    assert dropped.status_code == 200 and dropped.json()["status"] == "requested"
    city.wait_ride(
        ride_b, lambda r: _offered_to(city, ride_b) == second, what="re-offer to the other driver"
    )


def test_transitions_not_allowed_now_are_refused_with_409_and_the_current_state(city: City) -> None:
    (driver,) = place_drivers(city, [300])
    ride_id = city.request_ride("rider-6", DOWNTOWN, DROPOFF).json()["ride_id"]
    city.wait_ride(ride_id, lambda r: r["status"] == "offered", what="offer")
    assert city.act(driver, ride_id, "accept").status_code == 200
    early = city.act(driver, ride_id, "complete")
    assert early.status_code == 409
    assert early.json()["error"] == "conflict" and "matched" in early.json()["detail"]
    assert city.act(driver, ride_id, "accept").status_code == 409
    assert city.act(driver, ride_id, "arrived").status_code == 200
    assert city.act(driver, ride_id, "start").status_code == 200
    late_cancel = city.http.post(
        f"/v1/rides/{ride_id}/cancel", headers=city.token("rider", "rider-6")
    )
    assert late_cancel.status_code == 409 and "started" in late_cancel.json()["detail"]
