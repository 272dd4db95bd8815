"""docs/benchmarks.md: tables rendered from one run's JSON, prose kept by hand.

Everything a run measures is a table built here. What the figures mean is written by a person
between `<!-- hand:NAME -->` and `<!-- /hand -->` in the page itself; a re-render carries those
blocks over unchanged, so no sentence here can silently disagree with the numbers."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from loadtests.bench import report
from loadtests.bench.knee import Step, knee, step_from_e2e
from loadtests.bench.report import fmt_met, fmt_number, fmt_pairs, render_table
from loadtests.bench.stats import PairedRatio

HAND = re.compile(r"<!-- hand:([\w-]+) -->\n(.*?)<!-- /hand -->", re.S)
UNWRITTEN = "_Not written yet: a person reads the tables and says what they mean._\n"
SWEEP_PNG = "img/bench-sweep.png"


def hand_blocks(page: str) -> dict[str, str]:
    """name → hand-written text of an existing page."""
    return {m.group(1): m.group(2) for m in HAND.finditer(page)}


def hand(name: str, blocks: dict[str, str]) -> list[str]:
    """The lines of hand block NAME: its text in `blocks`, or a note that nobody wrote it yet."""
    return [f"<!-- hand:{name} -->", blocks.get(name, UNWRITTEN).rstrip("\n"), "<!-- /hand -->", ""]


def _machine(results: dict[str, Any]) -> list[str]:
    m, plan = results["machine"], results["plan"]
    versions = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    return [
        f"- **Date:** {m['date']} · **command:** `{results.get('command', 'make bench')}` · "
        f"total {results['duration_s']:.0f} s",
        f"- **Machine:** {m['cores']} cores, {m['cpu_model']}, {m['ram_gb']} GB RAM, Linux "
        f"{m['kernel']}, load average at start {m['load_avg_at_start']}",
        f"- **Versions:** Python {m['python']}, Valkey {m['valkey']}, {versions}",
        *[
            f"- **{figure} from an earlier run:** {run}"
            for figure, run in results.get("measured", {}).items()
            if not run.startswith(m["date"])
        ],
        f"- **Load generator:** {m['wrk'] or 'loadtests/bench/loadgen.py (asyncio)'}; "
        f"{plan['reps']} repetitions × {plan['seconds']:g} s per contender, interleaved (ABAB), "
        f"after a {plan['warmup_s']:g} s warm-up",
        "",
        render_table(
            ("phase", "wall", "cores used by the bench", "cores used by others"),
            [
                [k, f"{n['seconds']:g} s", f"{n['our_cores']:.2f}", f"{n['foreign_cores']:.2f}"]
                for k, n in results["noise"].items()
            ],
        ),
        "",
    ]


def _repetitions(figures: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key, title in (
        ("single_ping", "Single-ping HTTP ingest (req/s)"),
        ("batch", "Batch telemetry (pings/s)"),
        ("consumer", "Telemetry consumer (pings/s)"),
    ):
        rows = [
            [name, fmt_number(m["median"]), ", ".join(fmt_number(v) for v in m["reps"])]
            for name, m in figures.get(key, {}).items()
            if isinstance(m, dict)
        ]
        if rows:
            out += [f"### {title}", "", render_table(("contender", "median", "reps"), rows), ""]
    return out


def _e2e(level: dict[str, Any]) -> list[str]:
    cfg = level["config"]
    cpu = {**level.get("cpu_cores", {}), **level.get("cpu_totals", {})}
    tables = {
        ("stream/group", "max lag (age)", "max lag (entries)", "max pending"): [
            [k, f"{g['max_seconds']:.2f} s", f"{g['max_entries']:,}", f"{g['max_pending']:,}"]
            for k, g in level["lag"].items()
        ],
        ("service", "cores"): [[k, f"{v:.2f}"] for k, v in cpu.items()],
        ("process", "peak RSS", "target", "met?"): [
            [
                k,
                f"{mb:.0f} MB",
                "—" if k == "valkey" else "< 200 MB",
                fmt_met(None if k == "valkey" else mb < 200),
            ]
            for k, mb in level["rss_peak_mb"].items()
        ],
        ("Valkey command", "calls", "seconds", "µs per call"): [
            [c["command"], f"{c['calls']:,}", f"{c['seconds']:.2f}", f"{c['usec_per_call']:,.0f}"]
            for c in level.get("valkey_commands", [])
        ],
    }
    if "telemetry_stream" in level:
        tables[("t", "telemetry stream memory", "entries")] = [
            [f"{t:.0f} s", f"{b / 2**20:.1f} MB", f"{n:,}"]
            for t, b, n in level["telemetry_stream"]["series"]
        ]
    out = [
        f"### End to end @ {fmt_number(cfg['pings_per_s'])} pings/s + {cfg['rides_per_s']:g} "
        f"rides/s ({cfg['seconds']:g} s, {cfg['fleet_size']:,} drivers, "
        f"{cfg['available_drivers']:,} available)",
        "",
    ]
    for headers, rows in tables.items():
        out += [render_table(headers, rows), ""]
    return out


def _sweep_table(levels: list[dict[str, Any]]) -> str:
    steps = [step_from_e2e(level) for level in levels]
    found = knee(steps)
    columns: dict[str, Callable[[Step], str]] = {
        "offered pings/s": lambda s: (
            fmt_number(s.offered_pings_per_s)
            + (" **knee**" if s.offered_pings_per_s == found else "")
        ),
        "accepted": lambda s: fmt_number(s.accepted_pings_per_s),
        "shed (429)": lambda s: fmt_number(s.shed_pings_per_s),
        "conflated": lambda s: "not reported" if s.conflated is None else f"{s.conflated:,}",
        "worst lag": lambda s: f"{s.lag_s:.2f} s",
        "telemetry p99": lambda s: fmt_number(s.telemetry_p99_ms, "ms"),
        "request→offered p50 / p99": lambda s: (
            f"{fmt_number(s.offer_p50_ms)} / {fmt_number(s.offer_p99_ms)} ms"
        ),
        "unoffered": lambda s: f"{s.unoffered_rides} of {s.offered_rides + s.unoffered_rides}",
        "holds?": lambda s: "yes" if s.holds else "**no**",
        "CPU per service (cores, replicas summed)": lambda s: ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(s.cpu_cores.items())
        ),
    }
    return render_table(list(columns), [[cell(s) for cell in columns.values()] for s in steps])


def _sweep(sweep: dict[str, Any]) -> list[str]:
    cal, knees, plan = sweep["calibration"], sweep["knees"], sweep["plan"]
    top = max(plan["rates"])

    def knee_text(k: int | None) -> str:
        # a step above it was not swept: the knee is at least this much
        return "below the lowest step" if not k else ("≥ " if k == top else "") + fmt_number(k)

    rows = [
        [
            name,
            ", ".join(knee_text(k) for k in found),
            f"{found[0] / cal['hello_req_per_s']:.2f}" if found[0] else "—",
            f"{found[0] / cal['raw_xadd_pings_per_s']:.3f}" if found[0] else "—",
        ]
        for name, found in knees.items()
    ]
    out = [
        "## Capacity sweep",
        "",
        f"![capacity sweep]({SWEEP_PNG})",
        "",
        f"Steps of {plan['seconds']:g} s at {plan['rides_per_s']:g} rides/s, {plan['reps']} "
        f"sweep(s), contenders alternating per step, each climbing until its first failing "
        f"step. Calibration in the same run: hello world "
        f"{fmt_number(cal['hello_req_per_s'])} req/s, raw pipelined XADD "
        f"{fmt_number(cal['raw_xadd_pings_per_s'])} pings/s.",
        "",
        render_table(
            ("contender", "knee per sweep (pings/s)", "knee ÷ hello req/s", "knee ÷ raw XADD"),
            rows,
        ),
        "",
    ]
    if ratio := sweep.get("knee_ratio"):
        pairs = fmt_pairs(PairedRatio(tuple(ratio["pairs"])))
        verdict = {True: "met", False: "missed", None: "**the spread crosses 2×: undecided**"}
        target = verdict[ratio["met_2x"]]
        out += [f"Knee ratio, current ÷ {plan['previous']}: {pairs}; target ≥ 2×: {target}.", ""]
    for name, runs in sweep["levels"].items():
        out += [f"### {name} (first sweep)", "", _sweep_table(runs[0]), ""]
    return out


def _profile_line(summary: dict[str, Any], top: int = 8) -> str:
    if not summary.get("samples"):
        return "(no samples)"
    own = ", ".join(f"`{f}` {s:.0%}" for f, s in summary["self"][:top])
    return f"{summary['samples']} samples. Top self time: {own}."


def render_document(results: dict[str, Any], page: str = "") -> str:
    """The page for `results`; hand-written blocks are taken from `page` (the current one)."""
    figures, blocks = results["figures"], hand_blocks(page)
    out = [
        "# Benchmarks",
        "",
        "Measured by `make bench` (`python -m loadtests.bench`, source in `loadtests/bench/`). "
        "Tables are rendered from [benchmarks.json](benchmarks.json); the prose is written by "
        "hand.",
        "",
        *hand("intro", blocks),
        *_machine(results),
        "## Figures",
        "",
    ]
    if rows := report.headline_rows(figures):
        out += [report.render_rows(rows), ""]
    out += hand("figures", blocks)
    if "sweep" in figures:
        out += [*_sweep(figures["sweep"]), *hand("sweep", blocks)]
    out += ["## Bottlenecks", "", *hand("bottlenecks", blocks), "## Repetitions", ""]
    out += _repetitions(figures)
    if figures.get("e2e"):
        out += ["## End to end", "", *hand("e2e", blocks)]
        for level in figures["e2e"]:
            out += _e2e(level)
    profiles = results.get("profiles", {})
    if profiles:
        out += ["## Profiles (py-spy, sampled out of process)", ""]
        summaries = {
            f"ingest, {k.replace('_', ' ')} load": v for k, v in profiles.get("ingest", {}).items()
        }
        if "consumer" in profiles:
            summaries["geo consumer draining a backlog"] = profiles["consumer"]
        out += [f"- **{k}:** {_profile_line(v)}" for k, v in summaries.items()]
        out.append("")
    out += ["## How it is measured", "", *hand("method", blocks)]
    return "\n".join(out).rstrip() + "\n"
