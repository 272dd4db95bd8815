"""Talk to a running platform over real HTTP on loopback, as riders, drivers and ops."""

from __future__ import annotations

import time
from typing import Any

import httpx

from ridepulse.auth import mint_token
from tests.support.processes import Platform

DOWNTOWN = (37.7793, -122.4193)


class City:
    """A client for one platform: tokens, pings, rides, and deadline-bounded waits."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.secret = (platform.data_dir / "secret").read_text().strip()
        self.http = httpx.Client(base_url=platform.api, timeout=10)

    def token(self, role: str, subject: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(self.secret, role, subject)}"}

    def ping(
        self, driver: str, lat: float, lon: float, via: httpx.Client | None = None, **extra: Any
    ) -> httpx.Response:
        """One ping; `via` another client (a thread of its own must not share `self.http`)."""
        body = {"lat": lat, "lon": lon, "ts": int(time.time() * 1000), **extra}
        return (via or self.http).post(
            f"/v1/drivers/{driver}/location", json=body, headers=self.token("driver", driver)
        )

    def go_available(self, driver: str, lat: float, lon: float) -> None:
        """Ping, then go available at once (ingest records the ping's market before the 202)."""
        assert self.ping(driver, lat, lon).status_code == 202
        response = self.http.put(
            f"/v1/drivers/{driver}/status",
            json={"status": "available"},
            headers=self.token("driver", driver),
        )
        assert response.status_code == 200, response.text

    def request_ride(
        self, rider: str, pickup: tuple[float, float], dropoff: tuple[float, float], **extra: Any
    ) -> httpx.Response:
        body = {
            "pickup": {"lat": pickup[0], "lon": pickup[1]},
            "dropoff": {"lat": dropoff[0], "lon": dropoff[1]},
        }
        headers = self.token("rider", rider)
        if "idempotency_key" in extra:
            headers["Idempotency-Key"] = extra.pop("idempotency_key")
        return self.http.post("/v1/rides", json={**body, **extra}, headers=headers)

    def quote_response(
        self,
        rider: str,
        pickup: tuple[float, float],
        dropoff: tuple[float, float],
        role: str = "rider",
    ) -> httpx.Response:
        params = {
            "pickup_lat": pickup[0],
            "pickup_lon": pickup[1],
            "dropoff_lat": dropoff[0],
            "dropoff_lon": dropoff[1],
        }
        return self.http.get("/v1/quote", headers=self.token(role, rider), params=params)

    def quote(
        self,
        rider: str,
        pickup: tuple[float, float],
        dropoff: tuple[float, float],
        role: str = "rider",
    ) -> dict[str, Any]:
        """A quote that must be given (200). Polling loops ask as ops, whose quotes are not
        limited per minute like a rider's (RIDEPULSE_RIDER_QUOTES_PER_MIN)."""
        response = self.quote_response(rider, pickup, dropoff, role)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def ride(self, ride_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/rides/{ride_id}", headers=self.token("ops", "tests"))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def act(self, driver: str, ride_id: str, action: str) -> httpx.Response:
        return self.http.post(f"/v1/rides/{ride_id}/{action}", headers=self.token("driver", driver))

    def wait_ride(
        self, ride_id: str, predicate: Any, timeout_s: float = 15, what: str = ""
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            last = self.ride(ride_id)
            if predicate(last):
                return last
            time.sleep(0.05)
        raise AssertionError(f"ride {ride_id}: timed out waiting for {what}; last: {last}")

    def wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.http.get("/readyz").status_code == 200:
                return
            time.sleep(0.1)
        raise AssertionError(f"API not ready: {self.http.get('/readyz').text}")

    def close(self) -> None:
        self.http.close()


def offset(point: tuple[float, float], north_m: float, east_m: float) -> tuple[float, float]:
    """A point `north_m`/`east_m` metres from `point` (small-distance approximation)."""
    return point[0] + north_m / 111_320, point[1] + east_m / 88_000
