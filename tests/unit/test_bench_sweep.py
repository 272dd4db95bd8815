"""The capacity knee and the sweep's page: the rule of issue 10 (lag < 1 s, request→offered p99
< 100 ms), applied step by step, and tables rendered from JSON with hand-written prose kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadtests.bench import report
from loadtests.bench.document import SWEEP_PNG, hand_blocks, render_document
from loadtests.bench.knee import knee, step_from_e2e
from loadtests.bench.sweep import SweepPlan, climb, plot, summarise


def level(
    rate: int,
    *,
    lag_s: float = 0.1,
    p99: float | None = 40.0,
    unoffered: int = 0,
    shed: int = 0,
    conflated: int | None = None,
    telemetry_p99: float | None = 30.0,
) -> dict[str, Any]:
    """One end-to-end result shaped like e2e.run_e2e's."""
    return {
        "config": {"pings_per_s": rate, "rides_per_s": 100.0, "seconds": 20.0, "batch_pings": 1000},
        "telemetry": {
            "accepted_per_s": rate - shed * 50,
            "statuses": {202: 100, 429: shed},
            "latency_ms_p99": telemetry_p99,
        },
        "conflated": conflated,
        "lag": {
            "telemetry/matching.geo": {"max_seconds": lag_s, "max_entries": 3, "max_pending": 1},
            "rides/matching": {"max_seconds": 0.01, "max_entries": 0, "max_pending": 0},
        },
        "offer_ms": {"count": 2000 - unoffered, "unoffered": unoffered, "p50": 10.0, "p99": p99},
        "cpu_cores": {"ingest": 0.5, "valkey": 0.3},
        "rss_peak_mb": {"ingest": 80.0},
    }


def test_knee_is_the_last_step_under_both_limits() -> None:
    steps = [step_from_e2e(level(r)) for r in (10_000, 20_000)]
    steps.append(step_from_e2e(level(40_000, p99=140.0)))
    assert knee(steps) == 20_000


def test_lag_of_one_second_or_more_ends_the_knee() -> None:
    steps = [step_from_e2e(level(10_000)), step_from_e2e(level(20_000, lag_s=1.0))]
    assert knee(steps) == 10_000


def test_a_pass_above_a_failure_is_not_capacity() -> None:
    rates = {10_000: 0.2, 20_000: 3.0, 40_000: 0.2}
    steps = [step_from_e2e(level(r, lag_s=lag)) for r, lag in rates.items()]
    assert knee(steps) == 10_000


def test_unoffered_rides_past_one_percent_fail_a_step() -> None:
    assert step_from_e2e(level(10_000, unoffered=20)).holds  # 1 % of 2,000
    assert not step_from_e2e(level(10_000, unoffered=21)).holds
    assert knee([step_from_e2e(level(10_000, p99=None))]) is None


def test_a_step_that_sheds_past_one_percent_is_not_sustained() -> None:
    # 20 s of 10,000 pings/s in requests of 1,000: 200 requests, 1 % of them is 2
    assert step_from_e2e(level(10_000, shed=2)).holds
    assert not step_from_e2e(level(10_000, shed=3)).holds


def test_telemetry_answered_a_second_late_is_not_taken_at_its_pace() -> None:
    """Seen: two batch slots held pings at ingest's door for seconds at 140,000 pings/s while
    the consumers kept up; the step looked sustained."""
    assert step_from_e2e(level(10_000, telemetry_p99=999.0)).holds
    assert not step_from_e2e(level(10_000, telemetry_p99=1_000.0)).holds
    assert not step_from_e2e(level(10_000, telemetry_p99=None)).holds  # nothing answered


def test_shed_pings_come_from_429_answers() -> None:
    step = step_from_e2e(level(10_000, shed=40))
    assert step.shed_pings_per_s == 40 * 1000 / 20.0


def test_each_contender_climbs_until_its_first_failing_step_alternating_per_step() -> None:
    capacity = {"current": 30_000, "v0.1.0": 10_000}  # the highest rate each one holds
    calls: list[tuple[str, int, int]] = []

    def measure(name: str, rep: int, rate: int) -> dict[str, Any]:
        calls.append((name, rep, rate))
        return level(rate, lag_s=0.1 if rate <= capacity[name] else 3.0)

    plan = SweepPlan(rates=(10_000, 20_000, 30_000, 40_000, 60_000), reps=2)
    levels = climb(plan, ["current", "v0.1.0"], measure)
    # v0.1.0 fails 20k and runs no higher; current fails 40k and never runs 60k
    assert [len(run) for run in levels["current"]] == [4, 4]
    assert [len(run) for run in levels["v0.1.0"]] == [2, 2]
    assert calls[:4] == [
        ("current", 0, 10_000),
        ("v0.1.0", 0, 10_000),
        ("v0.1.0", 0, 20_000),  # BA on the next step: the machine's drift falls on both
        ("current", 0, 20_000),
    ]
    assert ("v0.1.0", 1, 30_000) not in calls and ("current", 1, 60_000) not in calls
    knees = summarise(plan, {"hello_req_per_s": 1.0, "raw_xadd_pings_per_s": 1.0}, levels)
    assert knees["knees"] == {"current": [30_000, 30_000], "v0.1.0": [10_000, 10_000]}


def sweep_results(knee_pairs: list[tuple[int, int]]) -> dict[str, Any]:
    """A sweep of two steps per contender, one rep per (current, previous) knee pair."""
    levels: dict[str, list[list[dict[str, Any]]]] = {"current": [], "v0.1.0": []}
    for ours, theirs in knee_pairs:
        levels["current"].append(
            [level(r, lag_s=0.1 if r <= ours else 5) for r in (10_000, 20_000)]
        )
        levels["v0.1.0"].append(
            [level(r, lag_s=0.1 if r <= theirs else 5) for r in (10_000, 20_000)]
        )
    plan = SweepPlan(rates=(10_000, 20_000), seconds=20.0, reps=len(knee_pairs))
    return summarise(plan, {"hello_req_per_s": 10_000.0, "raw_xadd_pings_per_s": 2e6}, levels)


def results_with(sweep: dict[str, Any]) -> dict[str, Any]:
    return {
        "machine": {
            "date": "d",
            "cores": 2,
            "cpu_model": "cpu",
            "ram_gb": 4,
            "kernel": "k",
            "python": "3.11",
            "valkey": "9",
            "wrk": None,
            "packages": {"redis": "8"},
            "load_avg_at_start": [1, 1, 1],
        },
        "plan": {"reps": 5, "seconds": 5, "warmup_s": 2},
        "noise": {},
        "duration_s": 60,
        "profiles": {},
        "figures": {"sweep": sweep},
    }


def test_knee_ratio_is_a_paired_ratio_that_says_when_its_spread_crosses_2x() -> None:
    sweep = sweep_results([(20_000, 10_000), (10_000, 10_000)] * 2 + [(20_000, 10_000)])
    assert sweep["knees"]["current"] == [20_000, 10_000, 20_000, 10_000, 20_000]
    assert sweep["knee_ratio"]["median"] == 2.0
    assert sweep["knee_ratio"]["met_2x"] is None
    page = render_document(results_with(sweep))
    assert "2.00× (1.00–2.00 over 5 pairs)" in page
    assert "the spread crosses 2×: undecided" in page
    # current held the top step (20,000) in three sweeps: its knee there is only a lower bound
    assert "| current | ≥ 20,000, 10,000, ≥ 20,000, 10,000, ≥ 20,000 |" in page


def test_a_knee_below_the_top_step_is_not_marked_as_a_bound() -> None:
    page = render_document(results_with(sweep_results([(10_000, 10_000)] * 5)))
    assert "| current | 10,000, 10,000, 10,000, 10,000, 10,000 |" in page
    assert "≥ 10,000" not in page


def test_fewer_than_five_pairs_are_marked_unpublishable() -> None:
    page = render_document(results_with(sweep_results([(20_000, 10_000)])))
    assert "too few pairs to publish" in page


def test_sweep_table_marks_the_knee_and_missing_conflation() -> None:
    page = render_document(results_with(sweep_results([(10_000, 10_000)])))
    assert "| 10,000 **knee** |" in page
    assert "not reported" in page
    assert f"]({SWEEP_PNG})" in page


def test_rerender_keeps_hand_written_prose() -> None:
    results = results_with(sweep_results([(10_000, 10_000)]))
    first = render_document(results)
    assert "Not written yet" in first
    edited = first.replace(
        "<!-- hand:sweep -->\n" + first.split("<!-- hand:sweep -->\n")[1].split("<!--")[0],
        "<!-- hand:sweep -->\nThe knee is bound by matching's lag.\n",
    )
    again = render_document(results, edited)
    assert hand_blocks(again)["sweep"] == "The knee is bound by matching's lag.\n"


def test_plot_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "sweep.png"
    plot(sweep_results([(10_000, 10_000)]), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def measure(reps: list[float]) -> dict[str, Any]:
    return {"median": sorted(reps)[len(reps) // 2], "reps": reps}


def test_every_peer_ratio_is_paired_and_an_absolute_target_can_be_undecided() -> None:
    figures = {
        "single_ping": {n: measure([10.0, 11, 12, 11, 10]) for n in ("ingest", "hello", "naive")},
        "batch": {
            "ingest": measure([190_000.0, 210_000, 205_000, 220_000, 215_000]),
            "raw_xadd": measure([2e6] * 5),
        },
        "consumer": {
            "matching": measure([120_000.0] * 5),
            "faststream": measure([2_000.0] * 5),
        },
    }
    rows = report.headline_rows(figures)
    assert rows and all(row.pairs is not None and len(row.pairs.pairs) == 5 for row in rows)
    batch, consumer = rows[-2], rows[-1]
    assert batch.met is None  # one rep of five under 200,000: the run cannot tell
    assert report.fmt_row_met(batch) == "**spread crosses the target**"
    assert consumer.met is True
