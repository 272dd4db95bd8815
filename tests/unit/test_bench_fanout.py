"""The dashboard fan-out bench's pure pieces: the city's pings and ride steps, what the clients
record inside the window, and the page rendered from a run's JSON."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any, cast

import orjson

from loadtests.bench import fleet
from loadtests.bench.document import hand_blocks
from loadtests.bench.fanout.city import RIDES_IN_FLIGHT, RideFlow, city_pings
from loadtests.bench.fanout.clients import Recorder
from loadtests.bench.fanout.page import DETAILS, HEADLINE, render, table
from loadtests.bench.publish import command_line, publish
from ridepulse.rides.store import RideStore

LIFECYCLE = ["request", "offer", "accept", "arrived", "start", "complete"]


class RecordingStore:
    """Stands in for RideStore: records each step the city takes as (step, ride, driver)."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, str, str]] = []

    async def request_ride(self, *, ride_id: str, **_: Any) -> None:
        self.steps.append(("request", ride_id, ""))

    async def offer(self, *, ride_id: str, driver_id: str, **_: Any) -> None:
        self.steps.append(("offer", ride_id, driver_id))

    async def accept(self, ride_id: str, driver_id: str) -> None:
        self.steps.append(("accept", ride_id, driver_id))

    async def arrived(self, ride_id: str, driver_id: str) -> None:
        self.steps.append(("arrived", ride_id, driver_id))

    async def start(self, ride_id: str, driver_id: str) -> None:
        self.steps.append(("start", ride_id, driver_id))

    async def complete(self, ride_id: str, driver_id: str, **_: Any) -> None:
        self.steps.append(("complete", ride_id, driver_id))


def _city_steps(count: int, drivers: int) -> list[tuple[str, str, str]]:
    store = RecordingStore()
    flow = RideFlow(cast(RideStore, store), drivers, random.Random(11))

    async def steps() -> None:
        for _ in range(count):
            await flow.step()

    asyncio.run(steps())
    return store.steps


def _run(p99_ms: float, clients_dropped: int) -> dict[str, Any]:
    figures = {name: 1.0 for name, _, _ in (*HEADLINE, *DETAILS)}
    return {**figures, "p99_ms": p99_ms, "clients_dropped": clients_dropped}


def _results(*runs: dict[str, Any]) -> dict[str, Any]:
    machine = {"date": "2026-12-05 10:00 UTC", "cores": 2, "cpu_model": "cpu", "ram_gb": 24.0}
    machine |= {"kernel": "6", "python": "3.11", "valkey": "9", "packages": {"orjson": "3"}}
    settings = {"clients": 10, "drivers": 20, "ride_events": 10.0, "ping_interval": 4.0}
    settings |= {"seconds": 8, "measure_every": 10}
    command = "python -m loadtests.bench.dashboard_fanout --clients 10"
    page = {"command": command, "runs": list(runs), "busy": 15.0, "discarded": 0}
    return {"machine": machine, "settings": settings, **page}


def _delta(*event_times_ms: int) -> bytes:
    return orjson.dumps({"kind": "delta", "events": [{"time": t} for t in event_times_ms]})


def test_city_pings_wrap_around_the_fleet_and_use_its_driver_ids() -> None:
    pings = city_pings(first=8, count=4, drivers=10, step=1)
    assert [p.driver_id for p in pings] == [fleet.driver_id(i) for i in (8, 9, 0, 1)]


def test_city_pings_move_the_drivers_between_steps() -> None:
    before, after = city_pings(0, 3, 3, step=0), city_pings(0, 3, 3, step=1)
    assert all(a.lat > b.lat and a.lon > b.lon for a, b in zip(after, before, strict=True))


def test_every_city_ride_takes_the_whole_lifecycle_in_order_with_one_driver() -> None:
    by_ride: dict[str, list[tuple[str, str]]] = {}
    for step, ride, driver in _city_steps(400, drivers=30):
        by_ride.setdefault(ride, []).append((step, driver))
    completed = [r for r, steps in by_ride.items() if steps[-1][0] == "complete"]
    for ride, steps in by_ride.items():
        names = [name for name, _ in steps]
        assert names == LIFECYCLE[: len(names)], f"{ride} went {names}"
        assert len({driver for _, driver in steps[1:]}) <= 1, f"{ride} changed driver: {steps}"
    assert len(completed) >= 40, f"only {len(completed)} of {len(by_ride)} rides completed"


def test_the_city_keeps_its_rides_in_flight_and_never_gives_a_driver_two() -> None:
    holding: dict[str, str] = {}  # driver → ride, from offer to completion
    in_flight: set[str] = set()
    for step, ride, driver in _city_steps(400, drivers=RIDES_IN_FLIGHT + 2):
        if step == "request":
            in_flight.add(ride)
            assert len(in_flight) <= RIDES_IN_FLIGHT
        elif step == "offer":
            assert driver not in holding, f"{driver} offered {ride} while on {holding.get(driver)}"
            holding[driver] = ride
        elif step == "complete":
            del holding[driver]
            in_flight.discard(ride)


def test_frames_count_only_inside_the_window() -> None:
    recorder = Recorder(expected=1, window=(1000, 2000))
    for at_ms in (999, 1000, 1500, 2000, 2001):
        recorder.receive(b'{"kind":"delta"}', at_ms, measured=False)
    assert (recorder.frames, recorder.text_bytes) == (3, 3 * len(b'{"kind":"delta"}'))


def test_a_measured_client_times_only_the_events_written_in_the_window() -> None:
    recorder = Recorder(expected=1, window=(1000, 2000))
    recorder.receive(_delta(900, 1000, 1900, 2100), at_ms=2050, measured=True)
    recorder.receive(orjson.dumps({"kind": "snapshot", "events": [{"time": 1500}]}), 2060, True)
    recorder.receive(_delta(1500), at_ms=1600, measured=False)
    assert recorder.latencies_ms == [1050, 150]


def test_table_has_a_row_per_run_and_a_median_row() -> None:
    lines = table(HEADLINE, [_run(250.4, 0), _run(180.0, 3)]).splitlines()
    assert lines[0].startswith("|  | clients | drivers | p50 ms | p99 ms")
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| run 1", "| run 2", "| **median**"]
    assert " 250 " in lines[2] and " 215 " in lines[4]  # p99 column; median of two = mean
    assert lines[4].endswith(" 2 |")  # clients dropped: median of 0 and 3, rounded


HAND = "<!-- hand:analysis -->\n### Where the time goes\nby hand\n<!-- /hand -->\n"


def test_page_keeps_the_hand_written_analysis_and_renders_both_tables() -> None:
    previous = f"# old figures\n\n{HAND}"
    page = render(_results(_run(900.0, 0), _run(1200.0, 0), _run(1100.0, 0)), previous)
    assert page.endswith(HAND)
    assert "old figures" not in page
    for _, heading, _ in (*HEADLINE, *DETAILS):
        assert f" {heading} |" in page, f"no column {heading!r}"
    assert "| **median** | 1 | 1 | 1 | 1100 |" in page
    assert "Target (issue 4): p99 ≤ 1 s — NOT met (median p99 1100 ms)." in page


def test_the_target_verdict_is_computed_from_the_run() -> None:
    assert "p99 ≤ 1 s — met (median p99 200 ms)." in render(_results(_run(200.0, 0)))


def test_a_first_page_says_its_prose_is_not_written_yet() -> None:
    page = render(_results(_run(200.0, 0)))
    assert set(hand_blocks(page)) == {"bottleneck", "analysis"}
    assert all("Not written yet" in text for text in hand_blocks(page).values())


def test_a_run_is_published_as_its_json_beside_its_page_keeping_the_hand_blocks(
    tmp_path: Path,
) -> None:
    page, json_path = tmp_path / "fanout.md", tmp_path / "fanout.json"
    page.write_text(f"# old figures\n\n{HAND}")
    results = _results(_run(200.0, 0))
    publish(results, json_path, page, render)
    assert orjson.loads(json_path.read_bytes()) == results
    assert page.read_text() == render(results, HAND)
    assert command_line("m", ["--out", "a b"]) == "python -m m --out 'a b'"
