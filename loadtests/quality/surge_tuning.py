"""Tuning surge from runs (issue 13.4): the spike city played with each surge variant — the
defaults, a lower cap, no smoothing, stronger hysteresis, surge off — on several seeds, and the
variants compared block by block against the defaults.

    python -m loadtests.quality.surge_tuning [--seeds 13,14,15,16] [--report-only]
        [--out docs/quality-runs/surge-tuning] [--page docs/surge-tuning.md]

A block is one seed in one market: two blocks play at once on one platform (one in sf, one in
nyc), and every variant plays the same blocks, so a variant's difference from the defaults is
taken within each block (same riders, same drivers, same let-out) and reported with its spread
over the blocks. A variant replaces a default only when it is better in every block on the
measure the issue names (fulfilment and waits), not on the average of a few runs. `make
quality-surge-tuning` (about 25 minutes on 2 cores) rewrites the page's tables; the prose
between the hand markers is kept."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from loadtests.quality.plan import SPIKE, SPIKE_ENV
from loadtests.quality.records import read_csv
from loadtests.quality.runner import RUNS_JSON, Stage, run_stages
from loadtests.quality.scenario import Scenario
from loadtests.quality.surge_report import SurgeRun, surge_run

VARIANTS: dict[str, dict[str, str]] = {
    "defaults": {},
    "cap-2": {"RIDEPULSE_SURGE_CAP": "2"},
    "no-smoothing": {"RIDEPULSE_SURGE_NEIGHBOUR_WEIGHT": "0"},
    "hysteresis-0.5": {"RIDEPULSE_SURGE_MIN_CHANGE": "0.5"},
    "off": {"RIDEPULSE_SURGE_CAP": "1"},
}
BASELINE = "defaults"
SEEDS = (13, 14, 15, 16)
MARKETS = ("sf", "nyc")
GENERATED = "<!-- generated: python -m loadtests.quality.surge_tuning; edit the prose below -->"


def block_name(variant: str, seed: int, market: str) -> str:
    return f"tune-{variant}-s{seed}-{market}"


def stages(seeds: Sequence[int] = SEEDS) -> list[Stage]:
    """Per variant, the seeds two at a time (one per market); consecutive stages of a variant
    share one platform start (runner.group_stages)."""
    out: list[Stage] = []
    for variant, env in VARIANTS.items():
        for i in range(0, len(seeds), len(MARKETS)):
            out.append(
                tuple(
                    spike_block(variant, {**SPIKE_ENV, **env}, seed, market)
                    for seed, market in zip(seeds[i : i + len(MARKETS)], MARKETS, strict=False)
                )
            )
    return out


def spike_block(variant: str, env: dict[str, str], seed: int, market: str) -> Scenario:
    return replace(SPIKE, name=block_name(variant, seed, market), seed=seed, market=market, env=env)


# --- the comparison (pure) ------------------------------------------------------------------
MEASURES: tuple[tuple[str, str, str, bool], ...] = (
    # SurgeRun field, heading, format, higher is better
    ("fulfilment", "fulfilment", "pct", True),
    ("mean_wait_s", "mean wait (s)", "s", False),
    ("served_share", "served of all quoted", "pct", True),
    ("declined_share", "declined for price", "pct", False),
    ("back_after_s", "back to 1.0x after (s)", "s", False),
)


def _fmt(value: float | None, kind: str) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.0f} %" if kind == "pct" else f"{value:.1f}"


def _diff(value: float | None, kind: str) -> str:
    if value is None:
        return "–"
    return f"{100 * value:+.0f} pts" if kind == "pct" else f"{value:+.1f}"


def mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def paired(runs: dict[str, dict[str, SurgeRun]], variant: str, field: str) -> list[float | None]:
    """variant − defaults of one measure, block by block (None where either is missing)."""
    out: list[float | None] = []
    for block, base in sorted(runs[BASELINE].items()):
        other = runs[variant].get(block)
        a = None if other is None else getattr(other, field)
        b = getattr(base, field)
        out.append(None if a is None or b is None else a - b)
    return out


def better_everywhere(runs: dict[str, dict[str, SurgeRun]], variant: str) -> bool:
    """Fulfilment not lower and mean wait not longer than the defaults' in every block, and
    strictly better on one of them somewhere: the bar for replacing a default."""
    fulfil = paired(runs, variant, "fulfilment")
    wait = paired(runs, variant, "mean_wait_s")
    if not fulfil or any(d is None for d in fulfil + wait):
        return False
    no_worse = all(f >= 0 for f in fulfil if f is not None) and all(
        w <= 0 for w in wait if w is not None
    )
    return no_worse and any((f or 0) > 0 or (w or 0) < 0 for f, w in zip(fulfil, wait, strict=True))


def tables(runs: dict[str, dict[str, SurgeRun]]) -> str:
    """The means per variant over the blocks, then each variant's differences from the defaults
    with their range over the blocks."""
    head = ["variant", "blocks", *(title for _, title, _, _ in MEASURES)]
    rows = []
    for variant, blocks in runs.items():
        cells = [_fmt(mean([getattr(r, f) for r in blocks.values()]), k) for f, _, k, _ in MEASURES]
        rows.append([variant, str(len(blocks)), *cells])
    diff_rows = []
    for variant in runs:
        if variant == BASELINE:
            continue
        cells = []
        for field, _, kind, _ in MEASURES:
            diffs = [d for d in paired(runs, variant, field) if d is not None]
            if not diffs:
                cells.append("–")
                continue
            spread = f"{_diff(min(diffs), kind)} … {_diff(max(diffs), kind)}"
            cells.append(f"{_diff(mean(diffs), kind)} ({spread})")
        verdict = "yes" if better_everywhere(runs, variant) else "no"
        diff_rows.append([variant, *cells, verdict])
    diff_head = [
        "variant − defaults",
        *(f"{title}: mean (range)" for _, title, _, _ in MEASURES),
        "better in every block",
    ]
    return "\n\n".join([_table(head, rows), _table(diff_head, diff_rows)])


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def load_runs(out: Path, seeds: Sequence[int] = SEEDS) -> dict[str, dict[str, SurgeRun]]:
    """SurgeRun per variant per block (`s13-sf`), from the runs' facts and per-ride CSVs."""
    facts: dict[str, Any] = json.loads((out / RUNS_JSON).read_text())
    ends_s = SPIKE.hotspot.until_s if SPIKE.hotspot else 0.0
    runs: dict[str, dict[str, SurgeRun]] = {}
    for variant in VARIANTS:
        for i, seed in enumerate(seeds):
            market = MARKETS[i % len(MARKETS)]
            name = block_name(variant, seed, market)
            if name in facts:
                records = read_csv(out / f"{name}.csv")
                run = surge_run(facts[name], records, ends_s)
                runs.setdefault(variant, {})[f"s{seed}-{market}"] = run
    return runs


def render(runs: dict[str, dict[str, SurgeRun]], previous: str) -> str:
    hand = previous.split(GENERATED, 1)[1] if GENERATED in previous else "\n"
    settings = "; ".join(
        f"`{name}`: "
        + (
            " ".join(f"{k.removeprefix('RIDEPULSE_')}={v}" for k, v in env.items())
            or "cap 3.0, neighbour weight 0.5, min change 0.2"
        )
        for name, env in VARIANTS.items()
    )
    blocks = len(next(iter(runs.values()), {}))
    return (
        "\n".join(
            [
                "# Tuning surge from runs",
                "",
                "The stadium let-out of docs/dispatch-quality.md played with each surge variant "
                f"on the same {blocks} blocks (a block is one seed in one market; "
                f"`python -m loadtests.quality.surge_tuning`). Variants: {settings}.",
                "",
                tables(runs),
                "",
                GENERATED,
            ]
        )
        + hand
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.quality.surge_tuning")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--out", type=Path, default=Path("docs/quality-runs/surge-tuning"))
    parser.add_argument("--page", type=Path, default=Path("docs/surge-tuning.md"))
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    seeds = tuple(int(s) for s in args.seeds.split(",") if s)
    if not args.report_only:
        run_stages(stages(seeds), args.out)
    previous = args.page.read_text() if args.page.exists() else ""
    args.page.write_text(render(load_runs(args.out, seeds), previous))
    print(f"surge tuning: {args.page} written", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
