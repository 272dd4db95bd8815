"""Pure pieces of the rider request path: request hash, quote cells, quote id shape, WS caps."""

from __future__ import annotations

import pytest

from ingest.quotes import QUOTE_CELL_RESOLUTION, checked_quote_id, trip_cells
from ingest.routes_rides import request_hash
from ridepulse.errors import InvalidInput
from ridepulse.geo import cell_of
from ridepulse.ws_cap import ConnectionCap


def test_request_hash_sees_every_validated_value() -> None:
    a = request_hash((1.0, 2.0), (3.0, 4.0), None)
    assert a == request_hash((1.0, 2.0), (3.0, 4.0), None)
    assert a != request_hash((1.0, 2.0), (3.0, 4.0), "q")
    assert a != request_hash((1.0, 2.0), (3.0, 4.0001), None)
    assert a != request_hash((3.0, 4.0), (1.0, 2.0), None)


def test_trip_cells_are_the_points_cell_and_its_neighbours() -> None:
    lat, lon = 37.7793, -122.4193
    cells = trip_cells(lat, lon)
    assert cell_of(lat, lon, QUOTE_CELL_RESOLUTION) in cells and len(cells) == 7
    assert cell_of(lat + 0.0005, lon, QUOTE_CELL_RESOLUTION) in cells, "50 m of drift fits"
    assert cell_of(lat + 0.03, lon, QUOTE_CELL_RESOLUTION) not in cells, "3 km does not"


@pytest.mark.parametrize("bad", [7, "", "q" * 65, ["q"]])
def test_quote_id_must_be_a_short_string(bad: object) -> None:
    with pytest.raises(InvalidInput) as refused:
        checked_quote_id(bad)
    assert refused.value.field == "quote_id"
    assert checked_quote_id(None) is None and checked_quote_id("q-1") == "q-1"


def test_connection_cap_counts_open_sockets_per_token() -> None:
    cap = ConnectionCap(2)
    assert cap.acquire("t") and cap.acquire("t") and not cap.acquire("t")
    assert cap.acquire("other")
    cap.release("t")
    assert cap.acquire("t")
    unlimited = ConnectionCap(0)
    assert all(unlimited.acquire("t") for _ in range(100))
