"""Auth (no BOLA), role checks and input validation, over real HTTP."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ridepulse.auth import mint_token
from tests.support.api import DOWNTOWN, City, offset

pytestmark = pytest.mark.e2e
DROPOFF = offset(DOWNTOWN, -2000, 500)


def test_missing_forged_and_expired_tokens_get_401(shared_city: City) -> None:
    body = {"lat": DOWNTOWN[0], "lon": DOWNTOWN[1]}
    url = "/v1/drivers/dx/location"
    assert shared_city.http.post(url, json=body).status_code == 401
    forged = mint_token("not-the-platform-secret-0123456789abcdef", "driver", "dx")
    response = shared_city.http.post(url, json=body, headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    expired = mint_token(shared_city.secret, "driver", "dx", ttl_s=-5)
    response = shared_city.http.post(url, json=body, headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401 and "expired" in response.json()["detail"]
    response = shared_city.http.post(url, json=body, headers={"Authorization": "Basic abc"})
    assert response.status_code == 401


def test_a_driver_cannot_act_for_another_driver(shared_city: City) -> None:
    body = {"lat": DOWNTOWN[0], "lon": DOWNTOWN[1]}
    mallory = shared_city.token("driver", "mallory")
    assert (
        shared_city.http.post("/v1/drivers/alice/location", json=body, headers=mallory).status_code
        == 403
    )
    assert (
        shared_city.http.put(
            "/v1/drivers/alice/status", json={"status": "available"}, headers=mallory
        ).status_code
        == 403
    )
    assert shared_city.http.get("/v1/drivers/alice", headers=mallory).status_code == 403


def test_a_rider_cannot_read_or_cancel_another_riders_ride(shared_city: City) -> None:
    ride_id = shared_city.request_ride("owner", DOWNTOWN, DROPOFF).json()["ride_id"]
    other = shared_city.token("rider", "intruder")
    # 404, not 403: a stranger learns nothing about whether the ride exists (issue 11.7)
    assert shared_city.http.get(f"/v1/rides/{ride_id}", headers=other).status_code == 404
    assert shared_city.http.post(f"/v1/rides/{ride_id}/cancel", headers=other).status_code == 404
    owner = shared_city.token("rider", "owner")
    assert shared_city.http.get(f"/v1/rides/{ride_id}", headers=owner).status_code == 200
    assert (
        shared_city.http.post(f"/v1/rides/{ride_id}/cancel", headers=owner).json()["status"]
        == "cancelled"
    )


def test_roles_are_enforced(shared_city: City) -> None:
    driver = shared_city.token("driver", "d-role")
    body = {
        "pickup": {"lat": DOWNTOWN[0], "lon": DOWNTOWN[1]},
        "dropoff": {"lat": DROPOFF[0], "lon": DROPOFF[1]},
    }
    assert shared_city.http.post("/v1/rides", json=body, headers=driver).status_code == 403
    rider = shared_city.token("rider", "r-role")
    batch = {
        "pings": [
            {
                "driver_id": "d1",
                "lat": DOWNTOWN[0],
                "lon": DOWNTOWN[1],
                "ts": int(time.time() * 1000),
            }
        ]
    }
    assert shared_city.http.post("/v1/telemetry", json=batch, headers=rider).status_code == 403
    ride_id = shared_city.request_ride("r-role", DOWNTOWN, DROPOFF).json()["ride_id"]
    assert shared_city.http.post(f"/v1/rides/{ride_id}/accept", headers=rider).status_code == 403
    # a driver the ride was never offered to cannot see it: 404 like a missing ride
    assert shared_city.http.post(f"/v1/rides/{ride_id}/accept", headers=driver).status_code == 404


def test_the_same_idempotency_key_sent_three_times_concurrently_makes_one_ride(
    shared_city: City,
) -> None:
    import concurrent.futures

    def send(_: int) -> Any:
        return shared_city.request_ride("idem-rider", DOWNTOWN, DROPOFF, idempotency_key="key-123")

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(send, range(3)))
    assert all(r.status_code == 202 for r in responses), [r.text for r in responses]
    assert len({r.json()["ride_id"] for r in responses}) == 1


NOW = int(time.time() * 1000)
BAD_PINGS: list[tuple[str, Any, int, str | None]] = [
    ("not json", b"{lat:", 422, None),
    ("array body", [1, 2], 422, None),
    ("missing lat", {"lon": -122.4}, 422, "lat"),
    ("lat out of range", {"lat": 91, "lon": -122.4}, 422, "lat"),
    ("lon not a number", {"lat": 37.77, "lon": "west"}, 422, "lon"),
    ("outside service area", {"lat": 40.71, "lon": -74.0}, 422, None),
    ("ts in the future", {"lat": 37.77, "lon": -122.42, "ts": NOW + 3_600_000}, 422, "ts"),
    ("ts too old", {"lat": 37.77, "lon": -122.42, "ts": NOW - 3_600_000}, 422, "ts"),
    ("ts as float", {"lat": 37.77, "lon": -122.42, "ts": 1.5}, 422, "ts"),
    ("negative speed", {"lat": 37.77, "lon": -122.42, "speed_mps": -3}, 422, "speed_mps"),
    ("heading over 360", {"lat": 37.77, "lon": -122.42, "heading": 400}, 422, "heading"),
    ("oversize body", {"lat": 37.77, "lon": -122.42, "pad": "x" * 10_000}, 413, None),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "field"), BAD_PINGS, ids=[c[0] for c in BAD_PINGS]
)
def test_malformed_ping_is_refused_with_its_reason(
    shared_city: City, case: str, body: Any, status: int, field: str | None
) -> None:
    headers = shared_city.token("driver", "d-bad")
    if isinstance(body, bytes):
        response = shared_city.http.post(
            "/v1/drivers/d-bad/location", content=body, headers=headers
        )
    else:
        response = shared_city.http.post("/v1/drivers/d-bad/location", json=body, headers=headers)
    assert response.status_code == status, f"{case}: {response.status_code} {response.text}"
    payload = response.json()
    assert payload["detail"], payload
    if field:
        assert payload.get("field") == field, payload
    if case == "outside service area":
        assert payload["error"] == "outside_service_area"


BAD_RIDES: list[tuple[str, Any, dict[str, str], int, str | None]] = [
    ("missing pickup", {"dropoff": {"lat": 37.76, "lon": -122.41}}, {}, 422, "pickup"),
    (
        "pickup lat text",
        {"pickup": {"lat": "x", "lon": -122.4}, "dropoff": {"lat": 37.76, "lon": -122.41}},
        {},
        422,
        "pickup.lat",
    ),
    (
        "dropoff outside",
        {"pickup": {"lat": 37.77, "lon": -122.42}, "dropoff": {"lat": 34.05, "lon": -118.24}},
        {},
        422,
        "dropoff",
    ),
    (
        "unknown field",
        {
            "pickup": {"lat": 37.77, "lon": -122.42},
            "dropoff": {"lat": 37.76, "lon": -122.41},
            "tip": 5,
        },
        {},
        422,
        "tip",
    ),
    (
        "unknown quote",
        {
            "pickup": {"lat": 37.77, "lon": -122.42},
            "dropoff": {"lat": 37.76, "lon": -122.41},
            "quote_id": "q-nope",
        },
        {},
        422,
        "quote_id",
    ),
    (
        "idempotency key too long",
        {"pickup": {"lat": 37.77, "lon": -122.42}, "dropoff": {"lat": 37.76, "lon": -122.41}},
        {"Idempotency-Key": "k" * 300},
        422,
        None,
    ),
]


@pytest.mark.parametrize(
    ("case", "body", "extra", "status", "field"), BAD_RIDES, ids=[c[0] for c in BAD_RIDES]
)
def test_malformed_ride_request_is_refused_with_its_reason(
    shared_city: City, case: str, body: Any, extra: dict[str, str], status: int, field: str | None
) -> None:
    headers = {**shared_city.token("rider", "r-bad"), **extra}
    response = shared_city.http.post("/v1/rides", json=body, headers=headers)
    assert response.status_code == status, f"{case}: {response.status_code} {response.text}"
    if field:
        assert response.json().get("field") == field, response.json()


def test_bad_batches_and_reads_get_clear_4xx(shared_city: City) -> None:
    fleet = shared_city.token("fleet", "gateway")
    too_many = {
        "pings": [{"driver_id": f"d{i}", "lat": 37.77, "lon": -122.42} for i in range(5001)]
    }
    response = shared_city.http.post("/v1/telemetry", json=too_many, headers=fleet)
    assert response.status_code == 422 and response.json()["field"] == "pings"
    mixed = {
        "pings": [
            {"driver_id": "ok1", "lat": 37.77, "lon": -122.42},
            {"driver_id": "bad", "lat": 99, "lon": -122.42},
            {"lat": 37.77, "lon": -122.42},
        ]
    }
    response = shared_city.http.post("/v1/telemetry", json=mixed, headers=fleet)
    assert response.status_code == 202
    assert (response.json()["accepted"], response.json()["rejected"]) == (1, 2)
    assert [e["index"] for e in response.json()["errors"]] == [1, 2]
    ops = shared_city.token("ops", "tests")
    assert shared_city.http.get("/v1/rides/sf-nope", headers=ops).status_code == 404
    assert shared_city.http.get("/v1/rides/garbage", headers=ops).status_code == 404
    assert shared_city.http.get("/v1/drivers/never-seen", headers=ops).status_code == 404
    quote = shared_city.http.get(
        "/v1/quote",
        params={"pickup_lat": 200, "pickup_lon": 0, "dropoff_lat": 0, "dropoff_lon": 0},
        headers=shared_city.token("rider", "q"),
    )
    assert quote.status_code == 422
    assert (
        shared_city.http.put(
            "/v1/drivers/d-s/status",
            json={"status": "asleep"},
            headers=shared_city.token("driver", "d-s"),
        ).status_code
        == 422
    )


def test_per_driver_ping_rate_limit_answers_429(shared_city: City) -> None:
    codes = [shared_city.ping("d-fast", *DOWNTOWN).status_code for _ in range(40)]
    assert 429 in codes, codes
    assert codes[0] == 202
