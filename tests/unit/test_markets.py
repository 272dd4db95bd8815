"""The built-in markets, which of them a deployment runs, and their own rate cards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ridepulse.cluster import SLOTS, deal_slots, market_slot
from ridepulse.markets import InvalidMarketsFile, load_markets


def test_built_in_markets_are_san_francisco_and_new_york_with_their_own_fares() -> None:
    markets = load_markets(None, "all")
    assert list(markets.by_id) == ["sf", "nyc"]
    sf, nyc = markets.get("sf"), markets.get("nyc")
    assert markets.locate(40.758, -73.9855) is nyc
    assert markets.locate(37.7749, -122.4194) is sf
    # the same 5 km, 15 min trip costs more at the New York rate card
    assert nyc.fares.fare(5_000, 900, 1.0) > sf.fares.fare(5_000, 900, 1.0)
    assert sf.fares.fare(5_000, 900, 1.0) == pytest.approx(2.50 + 5.25 + 5.25 + 2.75)
    assert nyc.fares.fare(5_000, 900, 1.0) == pytest.approx(3.00 + 6.00 + 6.75 + 3.25)


def test_default_runs_only_the_first_market() -> None:
    assert list(load_markets().by_id) == ["sf"]
    assert list(load_markets(None, "").by_id) == ["sf"]


def test_a_list_of_ids_chooses_the_markets_in_its_order() -> None:
    assert list(load_markets(None, "nyc, sf").by_id) == ["nyc", "sf"]
    assert list(load_markets(None, "nyc").by_id) == ["nyc"]


def test_an_unknown_market_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown market.*lax.*known: sf, nyc"):
        load_markets(None, "sf,lax")


def test_the_two_built_in_markets_hash_to_different_primaries_of_three() -> None:
    # Plain even ranges (what any 3-primary cluster gets from a default slot split) already put
    # {sf} and {nyc} on different primaries; deal_slots keeps it so without moving either slot.
    thirds = {m: market_slot(m) * 3 // SLOTS for m in ("sf", "nyc")}
    assert thirds["sf"] != thirds["nyc"]
    owner = deal_slots(3, ["sf", "nyc"])
    assert owner[market_slot("sf")] != owner[market_slot("nyc")]
    assert owner == [slot * 3 // SLOTS for slot in range(SLOTS)]


@pytest.mark.parametrize("market_id", ["s}f", "{sf}", "", "a b", "a-b", "a:b", "SF", "x" * 33])
def test_a_market_id_that_would_break_keys_or_ride_ids_is_refused(
    tmp_path: Path, market_id: str
) -> None:
    doc = {
        "markets": [
            {
                "id": market_id,
                "name": "X",
                "bbox": {"min_lat": 1, "min_lon": 1, "max_lat": 2, "max_lon": 2},
                "center": {"lat": 1.5, "lon": 1.5},
            }
        ]
    }
    path = tmp_path / "markets.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InvalidMarketsFile, match=r"markets\[0\]\.id: .* is not 1 to 32 of a-z"):
        load_markets(path, "all")
