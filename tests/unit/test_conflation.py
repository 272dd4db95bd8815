"""Conflation of a read of telemetry entries: the newest ping per driver (or a window of them)
is kept, the superseded ones are counted, and an entry that loses nothing is left as it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from eta import service as eta_service
from ridepulse.bus.conflation import Conflation, catch_up_read_size, conflate
from ridepulse.contracts.telemetry_decode import PingRow
from ridepulse.settings import Settings


def entry(*pings: tuple[str, int]) -> list[PingRow]:
    return [PingRow(driver_id=d, lat=1.0, lon=2.0, ts=ts) for d, ts in pings]


def kept(pings: list[PingRow] | None, whole: list[PingRow]) -> list[tuple[str, int]]:
    return [(p.driver_id, p.ts) for p in (whole if pings is None else pings)]


def test_only_each_drivers_newest_ping_is_kept() -> None:
    read = [entry(("a", 1), ("b", 1)), entry(("a", 2), ("b", 3)), entry(("b", 2))]
    out = conflate(read, Conflation())
    assert [kept(k, w) for k, w in zip(out, read, strict=True)] == [[], [("a", 2), ("b", 3)], []]


def test_an_entry_that_loses_nothing_is_marked_whole() -> None:
    read = [entry(("a", 1), ("b", 1)), entry(("a", 2), ("c", 3))]
    out = conflate(read, Conflation())
    assert out[1] is None  # the consumer keeps its decoded event as it is
    assert out[0] is not None and kept(out[0], read[0]) == [("b", 1)]


def test_two_pings_of_a_driver_with_the_same_ts_keep_the_later_one() -> None:
    read = [entry(("a", 5)), entry(("a", 5), ("a", 5))]
    out = conflate(read, Conflation())
    assert out[0] == [] and out[1] is not None
    assert len(out[1]) == 1 and out[1][0] is read[1][1]


def test_a_window_keeps_the_pings_close_enough_to_the_newest() -> None:
    read = [entry(("a", 1_000), ("a", 9_000)), entry(("a", 12_000))]
    out = conflate(read, Conflation(window_ms=5_000))
    assert [kept(k, w) for k, w in zip(out, read, strict=True)] == [[("a", 9_000)], [("a", 12_000)]]


@pytest.mark.parametrize(
    ("window_ms", "expected"),
    [(0, [[], [("a", 12_000)]]), (15_000, [[("a", 1_000), ("a", 9_000)], [("a", 12_000)]])],
)
async def test_eta_keeps_the_pings_its_window_setting_names_and_0_the_newest_only(
    tmp_path: Path, window_ms: int, expected: list[list[tuple[str, int]]]
) -> None:
    """README: RIDEPULSE_ETA_CONFLATION_WINDOW_MS, 0 = the newest only; the default (15 s)
    keeps the pings within it. The policy is the one eta's service wiring gives its telemetry
    runtime (built as `serve` builds it; no server is reached)."""
    settings = Settings(
        redis_url="redis://127.0.0.1:1", data_dir=tmp_path, eta_conflation_window_ms=window_ms
    )
    deps, runtimes = eta_service.build(settings)
    try:
        [policy] = {r.conflation for r in runtimes if r.group == "eta.speeds"}
        assert policy is not None
        read = [entry(("a", 1_000), ("a", 9_000)), entry(("a", 12_000))]
        out = conflate(read, policy)
        assert [kept(k, w) for k, w in zip(out, read, strict=True)] == expected
    finally:
        await deps.redis.aclose()


def test_a_ping_newer_in_an_earlier_entry_wins() -> None:
    # stream order is not ts order: a phone's late batch may carry an older ping
    read = [entry(("a", 9)), entry(("a", 4))]
    assert conflate(read, Conflation()) == [None, []]


def test_a_catch_up_read_spans_the_backlog_left_behind_the_last_read() -> None:
    # 50 entries over 1.25 s (40 a second), 5 s more behind: 200 more entries
    assert catch_up_read_size(0, 1_225, 50, 6_225, floor=50, cap=400) == 250


def test_a_catch_up_read_stays_between_its_floor_and_its_cap() -> None:
    assert catch_up_read_size(0, 1_225, 50, 1_000_000, floor=50, cap=400) == 400
    assert catch_up_read_size(0, 10_000, 3, 10_100, floor=50, cap=400) == 50
    # one entry, or all in one ms: no rate to go by
    assert catch_up_read_size(5, 5, 1, 9_000, floor=50, cap=400) == 50
    assert catch_up_read_size(5, 5, 30, 9_000, floor=50, cap=400) == 50
