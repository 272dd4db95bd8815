"""The headline table of docs/benchmarks.md, and the cell formats every bench page shares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loadtests.bench.stats import PairedRatio, paired_ratio, ratio

MIN_PAIRS = 5  # fewer pairs than this and a ratio is a look, not a published figure


@dataclass(frozen=True)
class Row:
    figure: str
    ours: str
    peer: str
    ratio: float | None
    target: str
    met: bool | None
    pairs: PairedRatio | None = None  # per-rep ratios: the spread a published ratio comes with


def fmt_number(value: float | None, unit: str = "") -> str:
    """12345.6 → '12,346' (k-separated, no decimals above 100; two significant decimals below)."""
    if value is None:
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def fmt_met(value: bool | None) -> str:
    return "—" if value is None else ("yes" if value else "**no**")


def fmt_pairs(p: PairedRatio) -> str:
    few = "; too few pairs to publish" if len(p.pairs) < MIN_PAIRS else ""
    count = f"{len(p.pairs)} pair" + ("s" if len(p.pairs) > 1 else "")
    return f"{p.median:.2f}× ({p.low:.2f}–{p.high:.2f} over {count}{few})"


def fmt_paired(ours: Sequence[float], peer: Sequence[float]) -> str:
    """The ratio of two contenders measured rep by rep, as `fmt_pairs` writes it."""
    pairs = paired_ratio(ours, peer)
    return "—" if pairs is None else fmt_pairs(pairs)


def fmt_row_met(row: Row) -> str:
    if row.pairs is not None and row.met is None and row.target != "—":
        return "**spread crosses the target**"
    return fmt_met(row.met)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_row_ratio(row: Row) -> str:
    return fmt_ratio(row.ratio) if row.pairs is None else fmt_pairs(row.pairs)


def render_rows(rows: Sequence[Row]) -> str:
    return render_table(
        ("figure", "ours", "peer", "ratio", "target", "met?"),
        [(r.figure, r.ours, r.peer, fmt_row_ratio(r), r.target, fmt_row_met(r)) for r in rows],
    )


def _m(figure: dict[str, Any], name: str) -> float:
    return float(figure[name]["median"]) if name in figure else 0.0


def _pairs(figure: dict[str, Any], ours: str, peer: str) -> PairedRatio | None:
    if ours not in figure or peer not in figure:
        return None
    return paired_ratio(figure[ours]["reps"], figure[peer]["reps"])


def peer_row(
    label: str,
    figure: dict[str, Any],
    ours: str,
    peer: str,
    target: str = "—",
    met: bool | None = None,
) -> Row:
    """Ours against a peer: the medians, and the ratio taken pair by pair where both have reps."""
    mine, theirs, pairs = _m(figure, ours), _m(figure, peer), _pairs(figure, ours, peer)
    per_pair = pairs.median if pairs else ratio(mine, theirs)
    return Row(label, fmt_number(mine), fmt_number(theirs), per_pair, target, met, pairs)


def hello_world_row(figure: str, single: dict[str, Any], peer: str) -> Row:
    """Ours against a hello world floor, judged on every pair: ≥ 0.85× only when all are."""
    pairs = _pairs(single, "ingest", peer)
    met = pairs.verdict(0.85) if pairs else None
    return peer_row(figure, single, "ingest", peer, "≥ 0.85× hello world", met)


def against_peer_row(
    figure: dict[str, Any], ours: str, peer: str, label: str, target: float
) -> Row:
    """A throughput figure against its peer, met when every repetition reaches `target`."""
    reps = figure[ours]["reps"]
    met = PairedRatio(tuple(r / target for r in reps)).verdict(1.0) if reps else None
    return peer_row(label, figure, ours, peer, f"≥ {fmt_number(target)} pings/s", met)


def headline_rows(figures: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    if single := figures.get("single_ping"):
        rows.append(
            hello_world_row(
                "1. single-ping ingest, req/s (1 worker) vs FastAPI hello world", single, "hello"
            )
        )
        if "hello-gc-tuned" in single:  # the floor under the GC settings ingest runs with
            label = "1. single-ping ingest vs the hello world with ingest's GC settings"
            rows.append(hello_world_row(label, single, "hello-gc-tuned"))
        for peer, name in (
            ("naive", "naive FastAPI + pydantic + XADD"),
            ("naive-jwt", "naive + per-request JWT check"),
        ):
            if peer in single:
                of_hello = fmt_ratio(peer_row("", single, peer, "hello").ratio)
                label = f"1. single-ping ingest vs {name} (peer at {of_hello} hello world)"
                rows.append(peer_row(label, single, "ingest", peer))
    if batch := figures.get("batch"):
        label = "2. batch telemetry, pings/s (1000 pings/request) vs raw pipelined XADD"
        rows.append(against_peer_row(batch, "ingest", "raw_xadd", label, 200_000))
    if consumer := figures.get("consumer"):
        label = "3. telemetry consumer (geo index), pings/s per process vs FastStream per message"
        rows.append(against_peer_row(consumer, "matching", "faststream", label, 100_000))
    for level in figures.get("e2e", []):
        rows.extend(e2e_rows(level))
    return rows


def e2e_rows(level: dict[str, Any]) -> list[Row]:
    cfg, tel, rides, offer = level["config"], level["telemetry"], level["rides"], level["offer_ms"]
    tag = f"4. e2e @ {fmt_number(cfg['pings_per_s'])} pings/s + {cfg['rides_per_s']:g} rides/s"
    worst_group, worst = max(
        level["lag"].items(),
        key=lambda kv: kv[1]["max_seconds"],
        default=("—", {"max_seconds": 0.0}),
    )
    lag, p99, never = worst["max_seconds"], offer["p99"], offer["unoffered"]
    lag_figure = f"{tag}: max consumer lag (worst group: {worst_group})"
    at_target = cfg["pings_per_s"] >= 50_000 and cfg["rides_per_s"] >= 100
    return [
        Row(
            f"{tag}: telemetry accepted, pings/s",
            fmt_number(tel["accepted_per_s"]),
            fmt_number(cfg["pings_per_s"]) + " offered",
            ratio(tel["accepted_per_s"], cfg["pings_per_s"]),
            "50,000 pings/s" if at_target else "—",
            tel["accepted_per_s"] >= 50_000 if at_target else None,
        ),
        Row(
            f"{tag}: ride requests accepted /s",
            fmt_number(rides["accepted_per_s"]),
            f"{cfg['rides_per_s']:g} offered",
            ratio(rides["accepted_per_s"], cfg["rides_per_s"]),
            "100 /s" if at_target else "—",
            rides["accepted_per_s"] >= 100 if at_target else None,
        ),
        Row(lag_figure, f"{lag:.2f} s", "—", None, "< 1 s", lag < 1.0),
        Row(
            f"{tag}: request→offered p50 / p99 ({offer['count']} offered, {never} never)",
            f"{fmt_number(offer['p50'])} / {fmt_number(p99)} ms",
            "—",
            None,
            "p99 < 100 ms",
            None if p99 is None else p99 < 100 and never == 0,
        ),
    ]
