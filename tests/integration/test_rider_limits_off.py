"""README, "Limits": 0 turns a limit off. Through the HTTP API in process against the real
embedded server, a rider goes past what each default would allow once its setting is 0:
ride requests and cancels per minute, and open rides at once (request_ride.lua)."""

from __future__ import annotations

import httpx
import pytest

from ridepulse.settings import Settings
from tests.support.ingest import SF_TRIP, Ingest, start

pytestmark = pytest.mark.integration


def default(name: str) -> int:
    """A setting's default as declared (not as this machine's environment may set it)."""
    value = Settings.model_fields[name].default
    assert isinstance(value, int) and value > 0, (name, value)
    return value


async def request_ride(ingest: Ingest, rider: str) -> httpx.Response:
    return await ingest.http.post("/v1/rides", json=SF_TRIP, headers=ingest.auth("rider", rider))


async def test_zero_per_minute_limits_let_a_rider_request_and_cancel_past_the_defaults(
    settings: Settings,
) -> None:
    """Each ride is cancelled before the next request, so the open-rides limit (default 1)
    never refuses one: only a per-minute counter could."""
    past_both = max(default("rider_ride_requests_per_min"), default("rider_cancels_per_min")) + 2
    unlimited = {"rider_ride_requests_per_min": 0, "rider_cancels_per_min": 0}
    async with start(settings.model_copy(update=unlimited)) as ingest:
        for attempt in range(past_both):
            requested = await request_ride(ingest, "rider-1")
            assert requested.status_code == 202, f"request {attempt + 1}: {requested.text}"
            ride_id = requested.json()["ride_id"]
            cancelled = await ingest.http.post(
                f"/v1/rides/{ride_id}/cancel", headers=ingest.auth("rider", "rider-1")
            )
            assert cancelled.status_code == 200, f"cancel {attempt + 1}: {cancelled.text}"
            assert cancelled.json()["status"] == "cancelled", cancelled.text


async def test_a_zero_open_rides_limit_lets_a_rider_hold_more_open_rides_than_the_default(
    settings: Settings,
) -> None:
    past_default = default("rider_open_rides") + 2
    async with start(settings.model_copy(update={"rider_open_rides": 0})) as ingest:
        ride_ids = []
        for attempt in range(past_default):
            requested = await request_ride(ingest, "rider-1")
            assert requested.status_code == 202, f"request {attempt + 1}: {requested.text}"
            ride_ids.append(requested.json()["ride_id"])
        assert len(set(ride_ids)) == past_default, ride_ids
        for ride_id in ride_ids:  # all open at once: nothing matches them in this test
            ride = await ingest.http.get(
                f"/v1/rides/{ride_id}", headers=ingest.auth("rider", "rider-1")
            )
            assert ride.json()["status"] == "requested", ride.text


async def test_with_the_default_open_rides_limit_the_second_open_ride_is_refused(
    settings: Settings,
) -> None:
    """The control for the test above: the same requests, under the default, are limited."""
    async with start(settings) as ingest:
        assert (await request_ride(ingest, "rider-1")).status_code == 202
        refused = await request_ride(ingest, "rider-1")
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "rate_limited", refused.text
