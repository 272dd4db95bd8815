"""The dashboard feed without Redis: state → snapshot/deltas, the hub's resume and coalescing
rules, KPI maths, the services board, and the shipped static files (vendored libs, base map)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any, ClassVar

import h3
import orjson
import pytest

from dashboard import basemap
from dashboard.config import FeedConfig
from dashboard.drivers import driver_dot
from dashboard.hub import Client, Hub
from dashboard.kpis import Match, compute_kpis, percentile
from dashboard.metrics import DROPPED_FRAMES
from dashboard.protocol import SequenceGap, apply_delta, decode, encode
from dashboard.ride_view import LIFECYCLE, ride_from_hash
from dashboard.series import append_point, empty_series
from dashboard.services_board import ServiceBoard
from dashboard.state import CityState
from ridepulse.markets import load_markets
from ridepulse.positions import pack_position

STATIC = Path(basemap.__file__).parent / "static"
MARKET = {"id": "sf", "name": "San Francisco"}
T0 = 1_800_000_000_000


def _state(**config: Any) -> CityState:
    return CityState(MARKET, FeedConfig(**config), stale_after_ms=1500)


def _frames(client: Client) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while not client.queue.empty():
        out.extend(decode(text) for text in client.queue.get_nowait())
    return out


def _ride(ride_id: str, status: str, start: int, rng: random.Random) -> dict[str, str]:
    reached = (
        LIFECYCLE[: LIFECYCLE.index(status) + 1]
        if status in LIFECYCLE[:6]
        else ("requested", status)
    )
    fields = {
        "ride_id": ride_id,
        "rider_id": "r1",
        "status": status,
        "version": str(len(reached)),
        "driver_id": "" if status == "requested" else f"d{rng.randint(0, 9)}",
        "pickup_lat": "37.77",
        "pickup_lon": "-122.42",
        "dropoff_lat": "37.78",
        "dropoff_lon": "-122.41",
        "pickup_eta_s": str(rng.randint(30, 400)) if status != "requested" else "",
        "fare": "",
    }
    for i, step in enumerate(reached):  # requested at `start`, one step a second after
        fields[f"{step}_at"] = str(start + i * 1000)
    return fields


class RandomCity:
    """A seeded stream of everything the reader can feed into the state."""

    CELLS: ClassVar[list[str]] = [
        h3.latlng_to_cell(37.70 + i * 0.01, -122.45 + i * 0.007, 8) for i in range(8)
    ]

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.now = T0
        self.processed = 0

    def step(self, state: CityState) -> None:
        rng = self.rng
        self.now += rng.randint(20, 900)
        kind = rng.randrange(9)
        if kind == 0:
            drivers = {
                f"d{i}": (
                    f"{37.7 + rng.random() / 10:.6f},{-122.4 - rng.random() / 10:.6f},"
                    f"1,{rng.choice(['', '90'])}"
                )
                for i in rng.sample(range(12), rng.randint(0, 12))
            }
            statuses = {
                d: rng.choice(["offline", "available", "offered", "en_route", "on_trip"])
                for d in drivers
            }
            state.set_drivers(drivers, statuses)
        elif kind in (1, 2):
            ride_id = f"ride{rng.randint(0, 15)}"
            if rng.random() < 0.1:
                state.set_ride(ride_id, None, self.now)
            else:
                status = rng.choice(LIFECYCLE)
                start = self.now - rng.randint(0, 8000)
                state.set_ride(
                    ride_id, ride_from_hash(_ride(ride_id, status, start, rng)), self.now
                )
        elif kind == 3:
            cells = rng.sample(self.CELLS, rng.randint(0, len(self.CELLS)))
            state.set_surge({c: rng.choice([1.0, 1.2, 1.5, 2.0, 2.8]) for c in cells})
        elif kind == 4:
            state.add_events(
                {
                    "id": f"e{self.now}-{i}",
                    "type": "ride.requested",
                    "time": self.now,
                    "ride_id": "x",
                    "driver_id": None,
                    "detail": "",
                }
                for i in range(rng.randint(1, 30))
            )
        elif kind == 5:
            groups = {
                g: rng.choice([None, rng.randint(0, 500)])
                for g in rng.sample(["a", "b", "c"], rng.randint(0, 3))
            }
            state.add_series_point(
                {
                    "t": self.now,
                    "telemetry_per_s": rng.random() * 100,
                    "ride_events_per_s": None if rng.random() < 0.2 else 3.0,
                    "lag": groups,
                }
            )
        elif kind == 6:
            self.processed += rng.randint(0, 100)
            beat = {
                "service": rng.choice(["matching", "eta"]),
                "consumer": "c1",
                "processed": self.processed,
                "lag": 3,
                "pending": 1,
                "time": self.now,
            }
            state.observe_heartbeat(beat)
        elif kind == 7:
            state.set_ride_counts({"completed": rng.randint(0, 50), "expired": rng.randint(0, 5)})
            state.set_dead_letters(rng.randint(0, 3))
        state.maybe_refresh(self.now, every_ms=rng.choice([0, 1000]))


@pytest.mark.parametrize("seed", range(12))
def test_applying_the_deltas_to_the_first_snapshot_gives_a_fresh_snapshot(seed: int) -> None:
    state = _state(
        event_log_size=25,
        series_points=12,
        finished_ride_ttl_ms=4000,
        finished_ride_limit=5,
        client_queue_size=100_000,
        ring_size=100_000,
    )
    hub = Hub(state, state.config)
    city = RandomCity(seed)
    watcher = hub.connect()
    view: dict[str, Any] | None = None
    deltas = 0
    for _ in range(400):
        for _ in range(city.rng.randint(0, 4)):
            city.step(state)
        hub.tick()
        for message in _frames(watcher):
            if message["kind"] == "snapshot":
                assert view is None, "the watcher never lags, so it gets exactly one snapshot"
                view = message
            else:
                assert view is not None
                view = apply_delta(view, message)
                deltas += 1
        if city.rng.random() < 0.05:  # a newcomer's snapshot equals the watcher's view at that seq
            newcomer = hub.connect()
            hub.tick()
            fresh = _frames(newcomer)[-1]
            assert view is not None
            for message in _frames(watcher):
                view = apply_delta(view, message) if message["kind"] == "delta" else view
            assert fresh["kind"] == "snapshot" and fresh == view
            hub.disconnect(newcomer)
    final = hub.connect()
    hub.tick()
    assert view is not None
    for message in _frames(watcher):
        view = apply_delta(view, message)
    assert deltas > 100
    assert _frames(final) == [view]


def test_a_delta_that_skips_a_seq_is_refused() -> None:
    snapshot = _state().snapshot(5, "e1")
    with pytest.raises(SequenceGap):
        apply_delta(snapshot, {"kind": "delta", "seq": 7})


def _hub_with_deltas(count: int, **config: Any) -> Hub:
    state = _state(**config)
    hub = Hub(state, state.config, epoch="epoch-1")
    for i in range(count):
        state.add_events(
            [
                {
                    "id": f"e{i}",
                    "type": "ride.requested",
                    "time": i,
                    "ride_id": None,
                    "driver_id": None,
                    "detail": "",
                }
            ]
        )
        hub.tick()
    return hub


def test_a_resuming_client_gets_only_the_deltas_it_missed() -> None:
    hub = _hub_with_deltas(10)
    client = hub.connect(last_seq=6, epoch="epoch-1")
    assert not client.needs_snapshot
    assert [m["seq"] for m in _frames(client)] == [7, 8, 9, 10]
    hub.state.add_events(
        [{"id": "late", "type": "x", "time": 1, "ride_id": None, "driver_id": None, "detail": ""}]
    )
    hub.tick()
    assert [(m["kind"], m["seq"]) for m in _frames(client)] == [("delta", 11)]


def test_an_up_to_date_client_waits_for_the_next_delta() -> None:
    hub = _hub_with_deltas(3)
    client = hub.connect(last_seq=3, epoch="epoch-1")
    hub.tick()
    assert _frames(client) == []


@pytest.mark.parametrize(
    ("last_seq", "epoch", "why"),
    [
        (2, "epoch-1", "older than the ring"),
        (None, "epoch-1", "no last_seq"),
        (12, "epoch-1", "from the future"),
        (8, "other", "another process's sequence"),
    ],
)
def test_a_client_that_cannot_resume_gets_a_snapshot(
    last_seq: int | None, epoch: str, why: str
) -> None:
    hub = _hub_with_deltas(10, ring_size=5)
    client = hub.connect(last_seq=last_seq, epoch=epoch)
    hub.tick()
    frames = _frames(client)
    assert [(m["kind"], m["seq"]) for m in frames] == [("snapshot", 10)], why
    assert len(frames[0]["events"]) == 10


def test_a_slow_client_is_coalesced_into_one_snapshot_and_finally_dropped() -> None:
    hub = _hub_with_deltas(0, client_queue_size=3, max_resets=2)
    slow, fast = hub.connect(), hub.connect()
    before = DROPPED_FRAMES._value.get()
    seen: list[int] = []
    for i in range(4):
        hub.state.add_events(
            [
                {
                    "id": f"e{i}",
                    "type": "x",
                    "time": i,
                    "ride_id": None,
                    "driver_id": None,
                    "detail": "",
                }
            ]
        )
        hub.tick()
        seen.extend(m["seq"] for m in _frames(fast))  # the fast client reads every tick
    assert seen == [1, 2, 3, 4]  # snapshot 1 (built after the first delta), then deltas 2-4
    # The slow client's queue held snapshot 1 and deltas 2, 3; delta 4 did not fit: all four
    # frames are dropped and replaced by one snapshot of seq 4.
    assert [(m["kind"], m["seq"]) for m in _frames(slow)] == [("snapshot", 4)]
    assert DROPPED_FRAMES._value.get() - before == 4
    for i in range(30):  # never reads again: coalesced over and over, then given up on
        hub.state.add_events(
            [
                {
                    "id": f"f{i}",
                    "type": "x",
                    "time": i,
                    "ride_id": None,
                    "driver_id": None,
                    "detail": "",
                }
            ]
        )
        hub.tick()
        _frames(fast)
    assert slow.gone.is_set() and slow not in hub.clients
    assert fast in hub.clients


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert percentile([float(v) for v in range(1, 101)], 0.95) == pytest.approx(95.05)


def test_kpis_count_drivers_requests_matches_and_surge() -> None:
    now = T0
    matches = [
        Match("a", now - 70_000, now - 65_000, 300.0),
        Match("b", now - 30_000, now - 28_000, 100.0),
        Match("c", now - 20_000, now - 11_000, None),
    ]
    rides = [
        {"status": "requested"},
        {"status": "offered"},
        {"status": "matched"},
        {"status": "completed"},
    ]
    kpis = compute_kpis(
        driver_statuses={"offline": 4, "available": 3, "offered": 1, "on_trip": 2},
        rides=rides,
        ride_counts={"completed": 12, "cancelled": 2},
        matches=matches,
        surge=[1.0, 2.35, 1.4],
        dead_letters=1,
        now_ms=now,
    )
    assert kpis == {
        "drivers_online": 6,
        "drivers_available": 3,
        "open_requests": 2,
        "matched_last_min": 2,
        "ttm_p50_s": 5.0,
        "ttm_p95_s": 8.6,
        "pickup_eta_p50_s": 200.0,
        "completed": 12,
        "cancelled": 2,
        "expired": 0,
        "max_surge": 2.35,
        "dead_letters": 1,
        "trip_eta_mae_s": None,
        "pickup_mean_s": None,
        "fulfilment_rate": round(12 / 14, 3),
    }


def test_a_ride_counts_as_matched_once_and_leaves_after_its_finished_ttl() -> None:
    state = _state(finished_ride_ttl_ms=60_000)
    rng = random.Random(1)
    matched = ride_from_hash(_ride("r1", "matched", T0, rng))  # matched at T0 + 2 s
    state.set_ride("r1", matched, T0 + 2000)
    state.set_ride("r1", matched, T0 + 2500)
    state.refresh(T0 + 3000)
    assert state.kpis["matched_last_min"] == 1 and state.kpis["ttm_p50_s"] == 2.0
    done = ride_from_hash(_ride("r1", "completed", T0, rng))  # completed at T0 + 5 s
    state.set_ride("r1", done, T0 + 5000)
    state.refresh(T0 + 30_000)
    assert "r1" in state.rides and state.kpis["matched_last_min"] == 1
    state.refresh(T0 + 5000 + 60_001)
    assert "r1" not in state.rides
    assert state.kpis["matched_last_min"] == 0 and state.kpis["ttm_p50_s"] == 2.0


def test_ride_hash_with_blank_fields_reads_as_absent_and_timeline_follows_time() -> None:
    fields = {
        "ride_id": "r9",
        "rider_id": "u",
        "status": "started",
        "version": "4",
        "driver_id": "d1",
        "pickup_lat": "37.7",
        "pickup_lon": "-122.4",
        "dropoff_lat": "",
        "dropoff_lon": "",
        "requested_at": "1000",
        "matched_at": "3000",
        "started_at": "9000",
        "driver_arrived_at": "3000",
        "offered_at": "",
        "fare": "",
        "pickup_eta_s": "61.5",
    }
    ride = ride_from_hash(fields)
    assert ride is not None
    assert ride["dropoff_lat"] is None and ride["fare"] is None and ride["pickup_eta_s"] == 61.5
    assert [s["status"] for s in ride["timeline"]] == [
        "requested",
        "matched",
        "driver_arrived",
        "started",
    ]
    assert ride_from_hash({}) is None


def test_services_board_derives_rate_and_marks_silence_as_stale() -> None:
    board = ServiceBoard(stale_after_ms=3000)
    board.observe(
        {
            "service": "eta",
            "consumer": "eta-1",
            "processed": 100,
            "lag": 5,
            "pending": 2,
            "time": T0,
        }
    )
    board.observe(
        {
            "service": "eta",
            "consumer": "eta-1",
            "processed": 100,
            "lag": 5,
            "pending": 2,
            "time": T0 + 3,
        }
    )
    board.observe(
        {
            "service": "eta",
            "consumer": "eta-1",
            "processed": 700,
            "lag": 1,
            "pending": 0,
            "time": T0 + 2000,
        }
    )
    (row,) = board.rows(T0 + 2500)
    assert row["processed_per_s"] == 300.0 and row["lag"] == 1 and not row["stale"]
    assert board.rows(T0 + 5001)[0]["stale"]
    board.sync({("eta", "eta-1"): None, ("pricing", "pricing-1"): None})
    assert [(r["service"], r["stale"]) for r in board.rows(T0 + 2500)] == [
        ("eta", True),
        ("pricing", True),
    ]
    board.sync({})
    assert board.rows(T0) == []


def test_series_pads_new_groups_and_drops_groups_that_left_the_window() -> None:
    series = empty_series()
    append_point(
        series, {"t": 1, "telemetry_per_s": 1.0, "ride_events_per_s": 2.0, "lag": {"a": 5}}, limit=3
    )
    append_point(
        series, {"t": 2, "telemetry_per_s": 1.0, "ride_events_per_s": 2.0, "lag": {"b": 7}}, limit=3
    )
    assert series["lag"] == {"a": [5, None], "b": [None, 7]}
    append_point(series, {"t": 3, "lag": {}}, limit=3)
    append_point(series, {"t": 4, "lag": {}}, limit=3)
    assert series["t"] == [2, 3, 4]
    assert series["lag"] == {"b": [7, None, None]}


def test_vendored_files_match_their_checksums() -> None:
    vendor = STATIC / "vendor"
    listed = {}
    for line in (vendor / "CHECKSUMS.sha256").read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    present = {str(p.relative_to(vendor)) for p in vendor.rglob("*") if p.is_file()} - {
        "CHECKSUMS.sha256",
        "README.md",
    }
    assert present == set(listed), (
        "every vendored file is listed in CHECKSUMS.sha256, and only those"
    )
    for name, digest in listed.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, f"{name} changed"
    assert {"leaflet/LICENSE", "uplot/LICENSE"} <= present


def test_committed_basemap_equals_a_regeneration() -> None:
    market = load_markets().default
    assert basemap.render(market) == (STATIC / "basemap.geojson").read_text(), (
        "run python -m dashboard.basemap"
    )
    doc = orjson.loads((STATIC / "basemap.geojson").read_bytes())
    kinds = {f["properties"]["kind"] for f in doc["features"]}
    assert kinds == {"outline", "street", "arterial", "sector"}


def test_drivers_travel_as_rows_and_decode_back_to_the_same_message() -> None:
    dots = [
        {
            "id": f"d{i:04d}",
            "lat": 37.77123,
            "lon": -122.41234,
            "status": "available",
            "heading": 90,
        }
        for i in range(100)
    ]
    snapshot = {"kind": "snapshot", "seq": 1, "drivers": dots}
    delta = {"kind": "delta", "seq": 2, "drivers": {"upsert": dots[:3], "remove": ["d0099"]}}
    for message in (snapshot, delta):
        text = encode(message)
        assert decode(text) == message
    wire = orjson.loads(encode(snapshot))
    assert wire["drivers"][0] == ["d0000", 37.77123, -122.41234, "available", 90]
    # rows instead of objects that repeat their keys: well under two thirds of the bytes
    assert len(encode(snapshot)) < 0.65 * len(orjson.dumps(snapshot))


def test_a_driver_dot_rounds_coordinates_to_about_a_metre() -> None:
    dot = driver_dot("d1", pack_position(37.7712345678, -122.4123456789, 0, 90.4), "available")
    assert dot is not None and (dot["lat"], dot["lon"]) == (37.77123, -122.41235)


def test_the_hub_ticks_less_often_with_many_clients() -> None:
    hub = Hub(_state(), FeedConfig(tick_s=0.1, tick_s_per_client=0.0002))
    for _ in range(500):
        hub.connect()
    assert hub.tick_interval_s() == pytest.approx(0.1)
    for _ in range(1500):
        hub.connect()
    assert hub.tick_interval_s() == pytest.approx(0.4)


def test_quality_kpis_measure_trip_eta_error_pickup_time_and_fulfilment() -> None:
    def ride(status: str, steps: dict[str, int], trip_eta_s: float | None) -> dict[str, object]:
        timeline = [{"status": s, "at": at} for s, at in steps.items()]
        return {"status": status, "timeline": timeline, "trip_eta_s": trip_eta_s}

    rides = [
        # pickup 120 s, trip 300 s quoted 330 s → error 30 s
        ride(
            "completed",
            {"matched": 0, "driver_arrived": 120_000, "started": 130_000, "completed": 430_000},
            330.0,
        ),
        # pickup 60 s, trip 200 s quoted 150 s → error 50 s
        ride(
            "completed",
            {"matched": 0, "driver_arrived": 60_000, "started": 60_000, "completed": 260_000},
            150.0,
        ),
        # on the way: counts for pickup time (90 s), not for ETA error
        ride("started", {"matched": 0, "driver_arrived": 90_000, "started": 95_000}, 500.0),
        ride("requested", {}, None),
    ]
    kpis = compute_kpis(
        driver_statuses={},
        rides=rides,
        ride_counts={"completed": 3, "cancelled": 0, "expired": 1},
        matches=[],
        surge=[],
        dead_letters=0,
        now_ms=1_000_000,
    )
    assert kpis["trip_eta_mae_s"] == 40.0
    assert kpis["pickup_mean_s"] == 90.0
    assert kpis["fulfilment_rate"] == 0.75
    assert kpis["open_requests"] == 1


def test_a_change_refreshes_the_kpis_at_most_every_least_ms() -> None:
    """KPIs go over every ride shown, so a busy city recomputes them twice a second, not at
    every tick; the change still arrives, one refresh later."""
    state = _state()
    state.refresh(10_000)
    state.set_ride_counts({"completed": 3})
    state.maybe_refresh(10_200, least_ms=500)
    assert state.kpis["completed"] == 0
    state.maybe_refresh(10_500, least_ms=500)
    assert state.kpis["completed"] == 3
    state.set_ride_counts({"completed": 4})
    state.maybe_refresh(10_501)  # no floor: every change refreshes at once
    assert state.kpis["completed"] == 4
