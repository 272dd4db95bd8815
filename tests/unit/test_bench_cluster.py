"""The cluster figures' pure accounting (loadtests/bench/cluster_stats.py): outage gaps around a
kill, acknowledged rides lost after a failover, and the tables rendered into docs/scaling.md."""

from __future__ import annotations

from typing import Any

import pytest

from loadtests.bench.cluster_stats import (
    BEGIN,
    END,
    Attempt,
    account_losses,
    e2e_rows,
    failover_summary,
    no_202_s,
    render_into,
    silence_s,
)

KILL = 100.0


def test_silence_runs_from_the_last_event_before_the_kill_to_the_first_after() -> None:
    assert silence_s([98.0, 99.5, 103.0], [98.0, 99.5, 103.0, 104.0], KILL) == pytest.approx(3.5)
    offers = [90.0, 99.0, 100.0, 106.5, 107.0]  # one series on both sides, as for offers
    assert silence_s(offers, offers, KILL) == pytest.approx(6.5)


def test_silence_is_unknown_without_an_event_on_either_side() -> None:
    assert silence_s([], [101.0], KILL) is None
    assert silence_s([99.0], [99.5], KILL) is None  # nothing came back after the kill
    assert silence_s([101.0, 102.0], [101.0, 102.0], KILL) is None


def test_no_202_ignores_requests_sent_before_the_kill_and_answered_after_it() -> None:
    attempts = [
        Attempt(sent=98.0, done=98.2, status=202, ride_id="a"),
        Attempt(sent=99.9, done=100.4, status=202, ride_id="burst", burst=True),  # written before
        Attempt(sent=101.0, done=104.0, status=503, ride_id=None),
        Attempt(sent=103.0, done=103.1, status=0, ride_id=None),
        Attempt(sent=105.0, done=105.5, status=202, ride_id="b"),
        Attempt(sent=106.0, done=106.1, status=202, ride_id="c"),
    ]
    assert no_202_s(attempts, KILL) == pytest.approx(105.5 - 98.2)


def test_a_ride_is_lost_when_its_get_is_404_or_its_request_is_missing_from_the_stream() -> None:
    acked = ["kept", "gone", "unlogged", "flaky"]
    loss = account_losses(
        acked,
        {"kept": 200, "gone": 404, "unlogged": 200, "flaky": 503},
        in_stream={"kept", "gone", "flaky"},
    )
    assert loss["acknowledged"] == 4
    assert loss["lost_get_404"] == ["gone"]
    assert loss["missing_from_stream"] == ["unlogged"]
    assert loss["lost"] == ["gone", "unlogged"]
    assert loss["unknown"] == ["flaky"]  # neither kept nor lost: reported apart


def test_nothing_is_lost_when_every_acknowledged_ride_is_found() -> None:
    loss = account_losses(["a", "b"], {"a": 200, "b": 200}, {"a", "b", "not-acked"})
    assert loss["lost"] == [] and loss["unknown"] == []


def _run(acks: bool, lost: list[str], acknowledged: int, no_offer: float | None) -> dict[str, Any]:
    return {
        "acks": acks,
        "no_offer_s": no_offer,
        "no_202_s": 4.0,
        "burst": 10,
        "burst_acked": 3,
        "statuses": {"202": acknowledged, "503": 2},
        "promoted": True,
        "loss": {
            "acknowledged": acknowledged,
            "lost": lost,
            "lost_get_404": lost,
            "missing_from_stream": [],
        },
    }


def test_failover_summary_adds_losses_over_runs_per_setting() -> None:
    runs = [
        _run(False, ["x"], 40, 3.0),
        _run(True, [], 30, 5.0),
        _run(False, [], 50, None),
        _run(True, [], 35, 7.0),
    ]
    rows = {row[0]: row for row in failover_summary(runs)}
    assert rows["off"] == ["off", "2", "3.0 s", "4.0 s", "1 of 90"]
    assert rows["on"] == ["on", "2", "6.0 s", "4.0 s", "0 of 65"]


def _step(contender: str, pings: float, p99: float | None) -> dict[str, Any]:
    return {
        "contender": contender,
        "pings_per_s": pings,
        "rides_per_s": 10.0,
        "offer_p50_ms": 10.0,
        "offer_p99_ms": p99,
        "lag_s": 0.1,
    }


def test_e2e_ratio_is_per_pair_with_its_spread() -> None:
    steps = [
        _step("one server", 1000, 50),
        _step("cluster", 900, 100),
        _step("one server", 1000, 50),
        _step("cluster", 1100, 150),
    ]
    rows = {row[0]: row for row in e2e_rows(steps)}
    pings = rows["pings/s accepted"]
    assert pings[1:3] == ["1,000, 1,000", "900, 1,100"]
    assert "1.00× (0.90–1.10 over 2 pairs" in pings[3]
    assert "too few pairs to publish" in pings[3]
    assert "2.50× (2.00–3.00" in rows["request→offered p99 (ms)"][3]


def test_e2e_ratio_is_left_out_when_a_step_has_no_value() -> None:
    steps = [_step("one server", 1000, 50), _step("cluster", 900, None)]
    assert {row[0]: row for row in e2e_rows(steps)}["request→offered p99 (ms)"][3] == "—"


RESULTS: dict[str, Any] = {
    "date": "2026-12-05 03:30 UTC",
    "command": "python -m loadtests.bench.cluster all",
    "machine": "2 cores",
    "load_avg_at_start": "3.0",
    "failover": {
        "config": {"drivers": 40, "rides_per_s": 3.0, "burst": 40},
        "runs": [_run(False, [], 40, 3.0), _run(True, [], 30, 5.0)],
    },
    "e2e": {
        "config": {"pings_per_s": 2500, "rides_per_s": 5.0, "seconds": 15.0},
        "steps": [_step("one server", 1000, 50), _step("cluster", 900, 100)],
    },
}


def test_rendering_replaces_only_the_generated_block() -> None:
    page = f"# Scaling\n\nhand prose before\n\n{BEGIN}\nold table\n{END}\n\nhand prose after\n"
    out = render_into(page, RESULTS)
    assert "old table" not in out
    assert out.startswith("# Scaling\n\nhand prose before\n\n" + BEGIN)
    assert out.endswith(END + "\n\nhand prose after\n")
    assert "| off | 1 | 3.0 s | 4.0 s | 0 of 40 |" in out
    assert "load average at start 3.0._" in out  # what the load meant is said by hand
    assert render_into(out, RESULTS) == out  # a re-render is stable


def test_rendering_appends_the_block_to_a_page_without_one() -> None:
    out = render_into("# Scaling\n", RESULTS)
    assert out.count(BEGIN) == 1 and out.rstrip().endswith(END)
