"""README (settings): `RIDEPULSE_MARKETS_FILE` replaces the built-in markets. A platform started
on a file of one market of its own serves that market end to end (pings, quotes at its rate
card, a ride offered and matched there) and refuses a point of the built-in ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import running_city
from tests.support.api import DOWNTOWN, offset

pytestmark = pytest.mark.e2e

LONDON = (51.5072, -0.1276)
MINIMUM_USD, BOOKING_FEE_USD = 40.0, 1.0  # the minimum is far above the trip's metered fare
MARKETS = {
    "markets": [
        {
            "id": "ldn",
            "name": "London",
            "bbox": {"min_lat": 51.40, "min_lon": -0.35, "max_lat": 51.62, "max_lon": 0.10},
            "center": {"lat": LONDON[0], "lon": LONDON[1]},
            "fares": {
                "base_usd": 3.0,
                "per_km_usd": 1.5,
                "per_min_usd": 0.4,
                "minimum_usd": MINIMUM_USD,
                "booking_fee_usd": BOOKING_FEE_USD,
            },
        }
    ]
}


def test_a_platform_on_a_markets_file_serves_its_market_and_only_it(tmp_path: Path) -> None:
    markets_file = tmp_path / "markets.json"
    markets_file.write_text(json.dumps(MARKETS))
    with running_city(tmp_path / "city", RIDEPULSE_MARKETS_FILE=str(markets_file)) as city:
        city.go_available("ldn-driver", *offset(LONDON, 300, 0))
        dropoff = offset(LONDON, -2000, 0)
        quote = city.quote("ldn-rider", LONDON, dropoff)
        # ridepulse/fares.py: max(metered, minimum) x surge + booking fee, at this file's card
        assert quote["fare"] == MINIMUM_USD + BOOKING_FEE_USD, f"not the file's card: {quote}"
        response = city.request_ride("ldn-rider", LONDON, dropoff, quote_id=quote["quote_id"])
        assert response.status_code == 202, response.text
        ride_id = response.json()["ride_id"]
        assert ride_id.startswith("ldn-"), ride_id
        city.wait_ride(ride_id, lambda r: r["status"] == "offered", timeout_s=30, what="an offer")
        assert city.act("ldn-driver", ride_id, "accept").json()["status"] == "matched"
        # the built-in markets are gone with the file: San Francisco is outside every market
        for refused in (
            city.ping("sf-driver", *DOWNTOWN),
            city.quote_response("sf-rider", DOWNTOWN, offset(DOWNTOWN, -2000, 0)),
            city.request_ride("sf-rider", DOWNTOWN, offset(DOWNTOWN, -2000, 0)),
        ):
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"] == "outside_service_area", refused.text
