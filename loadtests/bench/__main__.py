"""`python -m loadtests.bench` (make bench): measure, then write docs/benchmarks.md and .json."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from loadtests.bench import cluster
from loadtests.bench.document import SWEEP_PNG, render_document
from loadtests.bench.http_figures import LoadPlan
from loadtests.bench.measure import say
from loadtests.bench.publish import command_line, publish
from loadtests.bench.runner import BenchPlan, run
from loadtests.bench.sweep import FULL_RATES, SweepPlan, plot

DOCS = Path(__file__).resolve().parents[2] / "docs"


def parse_plan(argv: list[str]) -> tuple[BenchPlan, Path]:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__)
    add = parser.add_argument
    add("--seconds", type=float, default=5.0, help="length of each repetition")
    add(
        "--reps", type=int, default=5, help="repetitions per contender: the pairs behind each ratio"
    )
    add(
        "--figures",
        default="1234SC",
        help="which figures: any of 1 2 3 4 (4 includes memory), S (the capacity sweep) and C "
        "(the cluster figures: failover and cluster end to end, loadtests/bench/cluster.py)",
    )
    add(
        "--sweep-rates",
        default=",".join(str(r) for r in FULL_RATES),
        help="telemetry rates of the sweep, pings/s, comma-separated",
    )
    add("--sweep-seconds", type=float, default=30.0, help="length of each step")
    add("--sweep-reps", type=int, default=5, help="whole sweeps: the pairs behind the knee ratio")
    add(
        "--previous",
        default="v0.1.0",
        help="git tag of the release swept side by side ('' for the current tree alone)",
    )
    add("--no-profile", action="store_true", help="skip the py-spy profiles")
    add("--no-install", action="store_true", help="never apt-get install wrk")
    add(
        "--quick",
        action="store_true",
        help="1 rep of 2 s, 10 s end to end, a one-sweep 2-step sweep of 20 s: a smoke run",
    )
    add("--out", type=Path, default=DOCS, help="where benchmarks.md/.json go")
    add("--render", type=Path, help="only re-render benchmarks.md from this JSON file")
    args = parser.parse_args(argv)
    if args.render:
        write_page(orjson.loads(args.render.read_bytes()), args.out)
        raise SystemExit(0)
    plan = BenchPlan(
        load=LoadPlan(args.seconds, args.reps),
        figures=frozenset(args.figures),
        profile=not args.no_profile,
        install_wrk=not args.no_install,
        sweep=SweepPlan(
            rates=tuple(int(r) for r in args.sweep_rates.split(",")),
            seconds=args.sweep_seconds,
            reps=args.sweep_reps,
            previous=args.previous or None,
        ),
    )
    if args.quick:
        plan.load = LoadPlan(seconds=2.0, reps=1, warmup_s=1.0)
        plan.sweep = replace(
            plan.sweep, rates=plan.sweep.rates[:2], seconds=20.0, reps=1, calibration_s=2.0
        )
        plan.e2e_levels = [replace(level, seconds=10.0) for level in plan.e2e_levels]
    return plan, args.out


def write_page(results: dict[str, Any], out: Path, json_path: Path | None = None) -> None:
    """benchmarks.md (keeping its hand-written blocks), with a sweep its plot, and the JSON
    when `json_path` is given."""
    if "sweep" in results["figures"]:
        plot(results["figures"]["sweep"], out / SWEEP_PNG)
    publish(results, json_path, out / "benchmarks.md", render_document)


def with_earlier_figures(results: dict[str, Any], earlier_json: Path) -> dict[str, Any]:
    """A run of some figures (`--figures`) keeps the others' last results, each figure and
    profile marked with the run that measured it, so the page never loses one nor misdates it."""
    if not earlier_json.exists():
        return results
    earlier = orjson.loads(earlier_json.read_bytes())
    return results | {
        "figures": earlier["figures"] | results["figures"],
        "noise": earlier["noise"] | results["noise"],
        "profiles": earlier.get("profiles", {}) | results["profiles"],
        "measured": _measured(earlier) | _measured(results),
    }


def _measured(run: dict[str, Any]) -> dict[str, str]:
    """Figure (or 'NAME profile') → the date and command of the run that measured it."""
    stamp = f"{run['machine']['date']}, `{run.get('command', 'make bench')}`"
    names = [*run["figures"], *(f"{name} profile" for name in run.get("profiles", {}))]
    earlier: dict[str, str] = run.get("measured", {})
    return dict.fromkeys(names, stamp) | earlier


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    plan, out = parse_plan(argv)
    if "C" in plan.figures:
        # the cluster figures keep their own JSON and page (docs/cluster-bench.json, scaling.md)
        cluster.main(["all", "--out", str(out)] + (["--quick"] if "--quick" in argv else []))
        plan.figures = plan.figures - {"C"}
        if not plan.figures:
            return
    results = run(plan)
    results["command"] = command_line("loadtests.bench", argv) if argv else "make bench"
    say(f"measured in {results['duration_s']:.0f} s")
    results = with_earlier_figures(results, out / "benchmarks.json")
    write_page(results, out, out / "benchmarks.json")


if __name__ == "__main__":
    main()
