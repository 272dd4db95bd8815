"""The dashboard fan-out figure's pure pieces: the city's pings come from the shared bench fleet,
and the report's median row and tables come from stats.median and report.render_table."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

from loadtests.bench import fleet
from loadtests.bench.dashboard_fanout import (
    HEADLINE,
    Figures,
    fleet_pings,
    median_figures,
    quantile_or_nan,
    table,
)


def _figures(p99_ms: float, clients_dropped: int) -> Figures:
    values: dict[str, Any] = {f.name: (0 if f.type == "int" else 1.0) for f in fields(Figures)}
    return Figures(**{**values, "p99_ms": p99_ms, "clients_dropped": clients_dropped})


def test_city_pings_wrap_around_the_fleet_and_use_its_driver_ids() -> None:
    pings = fleet_pings(first=8, count=4, drivers=10, step=1)
    assert [p.driver_id for p in pings] == [fleet.driver_id(i) for i in (8, 9, 0, 1)]


def test_city_pings_move_the_drivers_between_steps() -> None:
    before, after = fleet_pings(0, 3, 3, step=0), fleet_pings(0, 3, 3, step=1)
    assert all(a.lat > b.lat and a.lon > b.lon for a, b in zip(after, before, strict=True))


def test_median_row_is_each_fields_median_in_its_own_type() -> None:
    middle = median_figures([_figures(300.0, 1), _figures(100.0, 5), _figures(200.0, 2)])
    assert middle.p99_ms == 200.0
    assert middle.clients_dropped == 2 and isinstance(middle.clients_dropped, int)


def test_table_has_a_row_per_run_and_a_median_row() -> None:
    text = table(HEADLINE, [_figures(250.4, 0), _figures(180.0, 3)])
    lines = text.splitlines()
    assert lines[0].startswith("|  | clients | drivers | p50 ms | p99 ms")
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| run 1", "| run 2", "| **median**"]
    assert " 250 " in lines[2] and " 215 " in lines[4]  # p99 column; median of two = mean


def test_quantile_of_nothing_measured_is_nan_not_an_error() -> None:
    assert math.isnan(quantile_or_nan([], 99))
    assert quantile_or_nan([1.0, 2.0, 3.0], 50) == 2.0
