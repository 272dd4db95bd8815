"""docs/benchmarks-dashboard.md from a run's JSON (fanout/run.py `bench`): the header and tables
are rendered; what they mean is written by hand in the page's hand blocks (document.py), kept
as they are on a re-render."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loadtests.bench.document import hand, hand_blocks
from loadtests.bench.report import render_table
from loadtests.bench.stats import median

Columns = Sequence[tuple[str, str, str]]  # (figure, heading, format); CPU % is of one core
HEADLINE: Columns = (
    ("clients", "clients", "{:.0f}"),
    ("drivers", "drivers", "{:.0f}"),
    ("p50_ms", "p50 ms", "{:.0f}"),
    ("p99_ms", "p99 ms", "{:.0f}"),
    ("max_ms", "max ms", "{:.0f}"),
    ("cpu_percent", "dashboard CPU %", "{:.0f}"),
    ("rss_mib", "dashboard RSS MiB", "{:.0f}"),
    ("connect_s", "all connected s", "{:.1f}"),
    ("dropped_frames", "dropped frames", "{:.0f}"),
    ("clients_dropped", "clients dropped", "{:.0f}"),
)
DETAILS: Columns = (
    ("pings_per_s", "pings/s", "{:.0f}"),
    ("ride_events_per_s", "ride events/s", "{:.1f}"),
    ("coverage", "events delivered", "{:.1%}"),
    ("frames_per_client_s", "frames/client/s", "{:.1f}"),
    ("kib_per_client_s", "JSON KiB/client/s", "{:.0f}"),
    ("bench_cpu_percent", "clients CPU %", "{:.0f}"),
    ("loop_lag_p99_ms", "clients loop lag p99 ms", "{:.0f}"),
    ("redis_cpu_percent", "Valkey CPU %", "{:.0f}"),
    ("city_cpu_percent", "city CPU %", "{:.0f}"),
    ("other_cpu_percent", "other processes CPU %", "{:.0f}"),
)


def medians(runs: Sequence[dict[str, Any]]) -> dict[str, float]:
    return {name: median([run[name] for run in runs]) for name in runs[0]}


def table(columns: Columns, runs: Sequence[dict[str, Any]]) -> str:
    """One row per run, then the median of each column."""
    rows = [*((f"run {i + 1}", run) for i, run in enumerate(runs)), ("**median**", medians(runs))]
    return render_table(
        ["", *(heading for _, heading, _ in columns)],
        [[label, *(fmt.format(row[name]) for name, _, fmt in columns)] for label, row in rows],
    )


def render(results: dict[str, Any], previous: str = "") -> str:
    """The page; the hand-written blocks are taken from `previous` (the current page)."""
    m, s, runs, busy = results["machine"], results["settings"], results["runs"], results["busy"]
    middle, versions = medians(runs), ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    noisy = [f"run {i + 1}" for i, r in enumerate(runs) if r["other_cpu_percent"] > busy]
    blocks = hand_blocks(previous)
    lines = [
        "# Dashboard fan-out",
        "",
        f"Measured {m['date']} on {m['cores']} cores ({m['cpu_model']}), {m['ram_gb']:.0f} GiB "
        f"RAM, Linux {m['kernel']}, Python {m['python']}, Valkey {m['valkey']}; {versions}.",
        "",
        f"```\n{results['command']}\n```",
        "",
        f"One dashboard process; {s['drivers']} drivers each pinging every {s['ping_interval']:g} "
        f"s; ~{s['ride_events']:g} ride events/s; {s['clients']} WebSocket clients "
        "(permessage-deflate offered) in one process, latency measured at every "
        f"{s['measure_every']}th client over {s['seconds']} s; {len(runs)} repetition(s), each on "
        "a fresh stack, and their median. CPU % is of one core; other processes' CPU is what ran "
        "outside the bench's own processes.",
        "",
        table(HEADLINE, runs),
        "",
        table(DETAILS, runs),
        "",
        f"Repetitions discarded and re-run because other processes took more than {busy:.0f} % of "
        f"a core: {results['discarded']}; kept although they did: {', '.join(noisy) or 'none'}.",
        "",
        # a verdict on a figure is a figure: computed, so it cannot outlive the run it judges
        f"Target (issue 4): p99 ≤ 1 s — {'met' if middle['p99_ms'] <= 1000 else 'NOT met'} "
        f"(median p99 {middle['p99_ms']:.0f} ms).",
        "",
        *hand("bottleneck", blocks),
        *hand("analysis", blocks),
    ]
    return "\n".join(lines).rstrip() + "\n"
