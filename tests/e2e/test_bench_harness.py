"""`make bench` and the dashboard fan-out bench, run end to end at a tiny size on real parts: the
harness starts ingest and its peers, measures figures 1, 2 and one end-to-end level on a fresh
`ridepulse up`, and renders its page from the results; the fan-out bench runs one repetition with
a few WebSocket clients. The figures' values are not judged here (`make bench` measures, on a
quiet machine); the harness is, so that a change to ingest or the platform that breaks it fails
CI rather than the next person who runs it. Figure 3 and the sweep need the bench extra
(FastStream, the previous release's worktree) and are left to `make bench`."""

from __future__ import annotations

import argparse
import asyncio
import math
from pathlib import Path

import pytest

from loadtests.bench.__main__ import write_page
from loadtests.bench.e2e import E2EConfig
from loadtests.bench.fanout.page import render
from loadtests.bench.fanout.run import repetition
from loadtests.bench.http_figures import LoadPlan
from loadtests.bench.machine import machine_info
from loadtests.bench.runner import BenchPlan, run
from tests.support.processes import ON_CLUSTER

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    # the harness starts its own platforms on one server: `make test-cluster` would repeat it
    pytest.mark.skipif(ON_CLUSTER, reason="the bench's platforms are its own, on one server"),
]
SINGLE_PING_CONTENDERS = {"ingest", "hello", "hello-gc-tuned", "naive", "naive-jwt"}


def test_the_bench_measures_figures_1_2_and_4_and_renders_them_keeping_the_hand_written_prose(
    tmp_path: Path,
) -> None:
    plan = BenchPlan(
        load=LoadPlan(seconds=1.0, reps=2, warmup_s=0.5),
        figures=frozenset({"1", "2", "4"}),
        profile=False,
        install_wrk=False,
        e2e_levels=[E2EConfig(2_000, 10, 5, fleet_size=4_000, available_drivers=500)],
    )
    results = run(plan)

    figures = results["figures"]
    assert set(figures["single_ping"]) == SINGLE_PING_CONTENDERS
    for name, measure in [*figures["single_ping"].items(), *figures["batch"].items()]:
        assert len(measure["reps"]) == 2 and min(measure["reps"]) > 0, (name, measure)
        assert all(d.get("errors", 0) == 0 for d in measure["details"]), (name, measure)
    (level,) = figures["e2e"]
    assert level["telemetry"]["accepted_per_s"] > 0
    assert level["rides"]["completed"] == level["rides"]["scheduled"] > 0
    assert level["offer_ms"]["count"] > 0, level["offer_ms"]
    assert {"telemetry/matching.geo", "rides/matching"} <= set(level["lag"]), level["lag"]
    assert {"ingest", "matching", "dashboard", "valkey"} <= set(level["rss_peak_mb"])
    assert set(results["noise"]) == {
        "1. single-ping HTTP ingest",
        "2. batch telemetry",
        "4/5. end to end + memory @ 2000 pings/s + 10 rides/s",
    }

    page = tmp_path / "benchmarks.md"
    page.write_text("<!-- hand:figures -->\nWhat the figures mean, by hand.\n<!-- /hand -->\n")
    write_page(results, tmp_path)
    text = page.read_text()
    assert "What the figures mean, by hand." in text
    assert "| 1. single-ping ingest, req/s (1 worker) vs FastAPI hello world |" in text
    assert "| 2. batch telemetry, pings/s (1000 pings/request) vs raw pipelined XADD |" in text
    assert "### End to end @ 2,000 pings/s + 10 rides/s" in text
    assert "too few pairs to publish" in text  # 2 pairs: the page says the ratio is a look


def test_the_fan_out_bench_delivers_ride_events_to_every_measured_client_and_renders_its_page(
    tmp_path: Path,
) -> None:
    args = argparse.Namespace(
        clients=20,
        drivers=200,
        ride_events=10.0,
        ping_interval=4.0,
        seconds=4,
        warmup=1.0,
        measure_every=5,
    )
    figures = asyncio.run(repetition(args))

    assert figures["clients"] == 20
    assert figures["samples"] > 0 and math.isfinite(figures["p99_ms"]), figures
    assert figures["clients_dropped"] == 0, figures
    assert figures["coverage"] > 0.5, figures  # events seen / (written × measured clients)
    assert figures["pings_per_s"] > 0 and figures["ride_events_per_s"] > 0, figures

    results = {
        "machine": machine_info(None),
        "settings": {**vars(args)},
        "runs": [figures],
        "busy": 15.0,
        "discarded": 0,
        "command": "python -m loadtests.bench.dashboard_fanout --clients 20",
    }
    hand = "<!-- hand:analysis -->\nThe analysis, by hand.\n<!-- /hand -->\n"
    page = render(results, previous=f"old page\n{hand}")
    assert page.endswith(hand)
    assert "| run 1 | 20 | 200 |" in page
