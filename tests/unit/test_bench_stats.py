"""The benchmark harness's pure helpers: statistics, the report table, profile summaries and the
request→offered pairing (no timing here: `make bench` measures)."""

from __future__ import annotations

import importlib
from pathlib import Path

import orjson
import pytest

from loadtests.bench import profiles
from loadtests.bench.__main__ import with_earlier_figures
from loadtests.bench.document import render_document
from loadtests.bench.profiles import (
    CONSUMER_WITHIN,
    INGEST_WITHIN,
    function_of,
    summarize_collapsed,
)
from loadtests.bench.report import (
    Row,
    fmt_number,
    fmt_ratio,
    hello_world_row,
    render_rows,
    render_table,
)
from loadtests.bench.ride_latency import request_to_offer_ms
from loadtests.bench.stats import PairedRatio, median, paired_ratio, percentile, ratio, spread


def test_median_of_odd_count_is_the_middle_value() -> None:
    assert median([5.0, 1.0, 3.0]) == 3.0


def test_median_of_even_count_is_the_mean_of_the_two_middle_values() -> None:
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5


def test_median_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="median of no values"):
        median([])


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)


def test_percentile_outside_0_to_100_is_refused() -> None:
    with pytest.raises(ValueError, match=r"outside 0\.\.100"):
        percentile([1.0], 101)


def test_ratio_to_a_peer_that_measured_nothing_is_none() -> None:
    assert ratio(10.0, 4.0) == 2.5
    assert ratio(10.0, 0.0) is None


def test_spread_is_range_over_median() -> None:
    assert spread([90.0, 100.0, 110.0]) == pytest.approx(0.2)


def test_numbers_are_thousands_separated_and_small_ones_keep_three_digits() -> None:
    assert fmt_number(215099.4, "pings/s") == "215,099 pings/s"
    assert fmt_number(0.4567) == "0.457"
    assert fmt_number(None) == "—"
    assert fmt_ratio(0.854) == "0.85×"


def test_render_table_escapes_pipes_in_cells() -> None:
    table = render_table(("a", "b"), [("x|y", "1")])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1 |"]


def test_render_rows_marks_a_missed_target_in_bold() -> None:
    rows = [
        Row("1. ping", "4,000", "9,000", 4000 / 9000, "≥ 0.85× hello world", False),
        Row("2. batch", "230,000", "1,900,000", 0.12, "≥ 200,000 pings/s", True),
    ]
    lines = render_rows(rows).splitlines()
    assert lines[0] == "| figure | ours | peer | ratio | target | met? |"
    assert lines[2] == "| 1. ping | 4,000 | 9,000 | 0.44× | ≥ 0.85× hello world | **no** |"
    assert lines[3].endswith("| yes |")


def test_request_to_offer_pairs_each_ride_with_its_first_offer() -> None:
    events = [
        ("ride.requested", "r1", 1000),
        ("ride.offered", "r1", 1012),
        ("ride.offered", "r1", 11020),
        ("ride.requested", "r2", 1005),
        ("ride.requested", "r3", 1010),
        ("ride.offered", "r3", 1110),
    ]
    gaps, unoffered = request_to_offer_ms(events)
    assert sorted(gaps) == [12.0, 100.0]
    assert unoffered == 1


def test_offers_of_rides_requested_before_the_window_are_ignored() -> None:
    gaps, unoffered = request_to_offer_ms([("ride.offered", "old", 5)])
    assert (gaps, unoffered) == ([], 0)


def test_function_of_drops_the_line_number() -> None:
    assert (
        function_of("check_ping (ingest/validation.py:42)") == "check_ping (ingest/validation.py)"
    )


def test_profile_summary_counts_self_and_inclusive_time_per_function() -> None:
    lines = [
        "run (a.py:1);handle (b.py:10);check (c.py:5) 6",
        "run (a.py:1);handle (b.py:11);check (c.py:7) 2",
        "run (a.py:1);handle (b.py:12) 2",
        "import (d.py:1) 10",
    ]
    summary = summarize_collapsed(lines, within=("run",), watch=("handle",))
    assert summary["samples"] == 10  # the import stack is outside `run`
    assert summary["self"][0] == ("check (c.py)", 0.8)
    assert ("handle (b.py)", 1.0) in summary["inclusive"]
    assert summary["watched"] == {"handle": 1.0}


def test_profile_summary_counts_the_stacks_of_every_root_it_is_given() -> None:
    """A consumer's batch in flight is a task of its own: its stack starts at `_process`."""
    lines = [
        "loop (l.py:1);run (a.py:1);read (r.py:3) 2",
        "loop (l.py:1);_process (p.py:9);check (c.py:5) 6",
        "loop (l.py:1);prefill (f.py:2) 12",
    ]
    summary = summarize_collapsed(lines, within=("run", "_process"), watch=("check",))
    assert summary["samples"] == 8  # the pre-fill is outside both roots
    assert summary["watched"] == {"check": 0.75}


def test_paired_ratios_are_taken_rep_by_rep_and_skip_a_peer_that_measured_nothing() -> None:
    pairs = paired_ratio([100.0, 90.0, 120.0], [100.0, 0.0, 100.0])
    assert pairs is not None
    assert pairs.pairs == (1.0, 1.2)
    assert paired_ratio([1.0], [0.0]) is None


def test_a_paired_ratio_is_met_only_when_every_pair_meets_the_target() -> None:
    assert PairedRatio((0.9, 0.95, 0.88)).verdict(0.85) is True
    assert PairedRatio((0.7, 0.8, 0.84)).verdict(0.85) is False
    assert PairedRatio((0.82, 0.9, 1.1)).verdict(0.85) is None


def test_the_hello_world_row_publishes_the_median_pair_with_its_spread() -> None:
    single = {
        "ingest": {"median": 9.0, "reps": [9.0, 8.0, 10.0, 9.0, 9.5]},
        "hello": {"median": 10.0, "reps": [10.0, 10.0, 10.0, 11.0, 9.0]},
    }
    row = hello_world_row("single ping", single, "hello")
    assert row.pairs is not None and row.ratio == row.pairs.median
    expected = (
        "| 0.90× (0.80–1.06 over 5 pairs) | ≥ 0.85× hello world | **spread crosses the target** |"
    )
    assert render_rows([row]).splitlines()[2].endswith(expected)


@pytest.mark.parametrize(
    ("qualname", "module"),
    [
        *INGEST_WITHIN.items(),
        *CONSUMER_WITHIN.items(),
        *profiles.INGEST_WATCH.items(),
        *profiles.CONSUMER_WATCH.items(),
    ],
)
def test_every_function_the_profiles_name_is_defined_where_they_say(
    qualname: str, module: str
) -> None:
    """A profile matches functions by name: a renamed one would read as 0 % without a word."""
    found: object = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
        assert found is not None, f"{module} has no {qualname}"
    assert callable(found)


def test_a_run_of_some_figures_keeps_the_others_and_the_page_says_which_run_each_is_from(
    tmp_path: Path,
) -> None:
    earlier = {
        "machine": {"date": "2026-12-01 10:00 UTC"},
        "command": "make bench",
        "figures": {"batch": {"old": 1}, "sweep": {"old": 2}},
        "noise": {"2. batch telemetry": {"old": 3}, "6. capacity sweep": {"old": 4}},
        "profiles": {"ingest": {"old": 5}},
    }
    (tmp_path / "benchmarks.json").write_bytes(orjson.dumps(earlier))
    machine = {
        "date": "2026-12-07 01:00 UTC",
        "cores": 2,
        "cpu_model": "a CPU",
        "ram_gb": 24.0,
        "kernel": "6",
        "python": "3.11",
        "valkey": "9",
        "wrk": None,
        "packages": {},
        "load_avg_at_start": [0.1, 0.1, 0.1],
    }
    now = {
        "machine": machine,
        "command": "python -m loadtests.bench --figures 2",
        "duration_s": 40.0,
        "plan": {"reps": 5, "seconds": 5.0, "warmup_s": 2.0},
        "figures": {"batch": {"new": 1}},
        "noise": {"2. batch telemetry": {"seconds": 40.0, "our_cores": 1.0, "foreign_cores": 0.0}},
        "profiles": {},
    }

    merged = with_earlier_figures(now, tmp_path / "benchmarks.json")

    assert merged["figures"] == {"batch": {"new": 1}, "sweep": {"old": 2}}
    assert merged["noise"]["6. capacity sweep"] == {"old": 4}
    assert merged["profiles"] == {"ingest": {"old": 5}}
    assert merged["measured"] == {
        "batch": "2026-12-07 01:00 UTC, `python -m loadtests.bench --figures 2`",
        "sweep": "2026-12-01 10:00 UTC, `make bench`",
        "ingest profile": "2026-12-01 10:00 UTC, `make bench`",
    }
    # the figures and earlier phases above are placeholders: only the provenance is rendered
    page = render_document(merged | {"figures": {}, "noise": now["noise"], "profiles": {}})
    assert "- **sweep from an earlier run:** 2026-12-01 10:00 UTC, `make bench`" in page
    assert "- **ingest profile from an earlier run:**" in page
    assert "- **batch from an earlier run:**" not in page
