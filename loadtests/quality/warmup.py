"""The ETA warm-up curve (issue 13.2): one long steady city at the morning rush, where the true
street speeds are far from the model's starting guess, played on a fresh platform so the speed
model starts empty; ETA error by minutes since the platform started, RidePulse against the
straight-line baseline on the same rides.

    python -m loadtests.quality.warmup [--out docs/quality-runs/warmup] [--page docs/eta-warmup.md]
                                       [--report-only]

`make quality` plays a minute of demand per scenario, too short for a trend; this run plays
nine (about 12 minutes in all), so it has its own target, `make quality-warmup`. Later buckets
hold only rides that finished before the run ended, and a bucket's rides are not the same as
another's, so the curve that shows learning is the ratio of the two MAEs over the same rides."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtests.quality.figures import finish, pyplot, save
from loadtests.quality.metrics import eta_pairs, mae_by_minute
from loadtests.quality.plan import DEADLINE, SEED
from loadtests.quality.records import RideRecord
from loadtests.quality.report import load_runs
from loadtests.quality.runner import run_stages
from loadtests.quality.scenario import Scenario, steady

NAME = "warmup"
DEMAND_S = 540.0
BUCKET_MIN = 2.0
# 8:00, the morning rush: the street speeds are at their slowest (loadtests/behaviours/speeds.py)
WARMUP = Scenario(NAME, 40, steady(0.3, DEMAND_S), SEED, "sf", 8.0, DEADLINE, drain_s=90)
PNG = "img/quality-eta-warmup-long.png"
GENERATED = "<!-- generated: python -m loadtests.quality.warmup; edit the prose below -->"

Row = tuple[float, int, float, float]  # bucket start (min), rides, model MAE, baseline MAE


def curve(records: Sequence[RideRecord], started_ms: int, phase: str) -> list[Row]:
    """Per bucket of request time: the rides with both estimates, and each estimator's MAE over
    exactly those rides."""
    rows: list[Row] = []
    both = [
        r for r in records if eta_pairs([r], phase, "model") and eta_pairs([r], phase, "baseline")
    ]

    def minute(r: RideRecord) -> float:
        return (r.requested_ms - started_ms) / 60_000

    model = mae_by_minute(
        [(minute(r), *eta_pairs([r], phase, "model")[0]) for r in both], BUCKET_MIN
    )
    base = {
        m: e
        for m, e, _ in mae_by_minute(
            [(minute(r), *eta_pairs([r], phase, "baseline")[0]) for r in both], BUCKET_MIN
        )
    }
    for start, error, n in model:
        rows.append((start, n, error, base[start]))
    return rows


def table(rows: Sequence[Row]) -> str:
    lines = [
        "| minutes since start | rides | RidePulse MAE (s) | baseline MAE (s) "
        "| RidePulse ÷ baseline |",
        "|---|---|---|---|---|",
    ]
    for start, n, model, base in rows:
        ratio = f"{model / base:.2f}" if base else "–"
        lines.append(
            f"| {start:g}–{start + BUCKET_MIN:g} | {n} | {model:.1f} | {base:.1f} | {ratio} |"
        )
    return "\n".join(lines)


def plot(curves: dict[str, list[Row]], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharex=True)
    for phase, rows in curves.items():
        middle = [start + BUCKET_MIN / 2 for start, *_ in rows]
        axes[0].plot(middle, [m for _, _, m, _ in rows], "o-", label=f"{phase}: RidePulse")
        axes[0].plot(middle, [b for *_, b in rows], "s--", label=f"{phase}: baseline")
        axes[1].plot(
            middle, [m / b if b else float("nan") for _, _, m, b in rows], "o-", label=phase
        )
    axes[0].set_title("ETA MAE by request time")
    axes[0].set_ylabel("mean absolute error (s)")
    axes[1].axhline(1.0, color="grey", linestyle=":")
    axes[1].set_title("RidePulse MAE ÷ baseline MAE, same rides")
    for ax in axes:
        ax.set_xlabel("minutes since the platform started")
        finish(ax)
    save(fig, path)


def render(facts: dict[str, Any], records: dict[str, list[RideRecord]], page: Path) -> str:
    run = facts[NAME]
    curves = {
        phase: curve(records[NAME], int(run["platform_started_ms"]), phase)
        for phase in ("pickup", "trip")
    }
    plot(curves, page.parent / PNG)
    previous = page.read_text() if page.exists() else ""
    hand = previous.split(GENERATED, 1)[1] if GENERATED in previous else "\n"
    lines = [
        "# ETA warm-up",
        "",
        f"One steady city ({WARMUP.drivers} drivers, {run['requests']} ride requests over "
        f"{DEMAND_S / 60:.0f} minutes, seed {WARMUP.seed}, the 8:00 rush) on a fresh platform "
        f"(`python -m loadtests.quality.warmup`; wall {run['wall_s']:.0f} s, load average "
        f"{run['load_avg_1m']:.1f} at the start). MAE per {BUCKET_MIN:g}-minute bucket of request "
        "time, both estimators over the same rides.",
        "",
        f"![ETA error against minutes since the platform started]({PNG})",
        "",
        *(f"**{phase.capitalize()} ETA**\n\n{table(rows)}\n" for phase, rows in curves.items()),
        GENERATED,
    ]
    return "\n".join(lines) + hand


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.quality.warmup")
    parser.add_argument("--out", type=Path, default=Path("docs/quality-runs/warmup"))
    parser.add_argument("--page", type=Path, default=Path("docs/eta-warmup.md"))
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    if not args.report_only:
        run_stages([(WARMUP,)], args.out)
    facts, records = load_runs(args.out)
    args.page.write_text(render(facts, records, args.page))
    print(f"warm-up: {args.page} written", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
