"""Conflation of a read of telemetry entries: the newest ping per driver (or a window of them)
is kept, the superseded ones are counted, and anything not a location entry passes as is."""

from __future__ import annotations

from typing import Any

import orjson

from ridepulse.bus.conflation import Conflation, catch_up_read_size, conflate


def entry(*pings: tuple[str, int]) -> dict[bytes, bytes]:
    data = {"pings": [{"driver_id": d, "lat": 1.0, "lon": 2.0, "ts": ts} for d, ts in pings]}
    return {b"type": b"driver.location", b"data": orjson.dumps(data)}


def kept(body: dict[bytes, bytes] | None) -> list[tuple[str, int]]:
    assert body is not None
    pings: list[dict[str, Any]] = orjson.loads(body[b"data"])["pings"]
    return [(p["driver_id"], p["ts"]) for p in pings]


def test_only_each_drivers_newest_ping_is_kept_and_the_rest_are_counted() -> None:
    bodies, dropped = conflate(
        [entry(("a", 1), ("b", 1)), entry(("a", 2), ("b", 3)), entry(("b", 2))], Conflation()
    )
    assert [kept(b) for b in bodies] == [[], [("a", 2), ("b", 3)], []]
    assert dropped == [2, 0, 1]


def test_two_pings_of_a_driver_with_the_same_ts_keep_one() -> None:
    bodies, dropped = conflate([entry(("a", 5)), entry(("a", 5))], Conflation())
    assert [kept(b) for b in bodies] == [[], [("a", 5)]]
    assert dropped == [1, 0]


def test_a_window_keeps_the_pings_close_enough_to_the_newest() -> None:
    bodies, dropped = conflate(
        [entry(("a", 1_000), ("a", 9_000)), entry(("a", 12_000))], Conflation(window_ms=5_000)
    )
    assert [kept(b) for b in bodies] == [[("a", 9_000)], [("a", 12_000)]]
    assert dropped == [1, 0]


def test_entries_that_are_not_well_formed_locations_pass_unchanged() -> None:
    odd = [
        {b"type": b"ride.requested", b"data": b"{}"},
        {b"type": b"driver.location", b"data": b"not json"},
        {b"type": b"driver.location", b"data": b'{"pings": [{"driver_id": 7, "ts": 1}]}'},
        None,
    ]
    bodies, dropped = conflate([*odd, entry(("a", 1))], Conflation())
    assert bodies[:4] == odd and dropped == [0, 0, 0, 0, 0]


def test_a_catch_up_read_spans_the_backlog_left_behind_the_last_read() -> None:
    # 50 entries over 1.25 s (40 a second), 5 s more behind: 200 more entries
    assert catch_up_read_size(0, 1_225, 50, 6_225, floor=50, cap=400) == 250


def test_a_catch_up_read_stays_between_its_floor_and_its_cap() -> None:
    assert catch_up_read_size(0, 1_225, 50, 1_000_000, floor=50, cap=400) == 400
    assert catch_up_read_size(0, 10_000, 3, 10_100, floor=50, cap=400) == 50
    # one entry, or all in one ms: no rate to go by
    assert catch_up_read_size(5, 5, 1, 9_000, floor=50, cap=400) == 50
    assert catch_up_read_size(5, 5, 30, 9_000, floor=50, cap=400) == 50
