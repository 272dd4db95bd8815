"""Pure accounting of the cluster figures: outage gaps around a kill, rides lost after a
failover, per-pair summaries, and the tables rendered into docs/scaling.md."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from loadtests.bench.report import fmt_number, fmt_paired, render_table
from loadtests.bench.stats import median

BEGIN = "<!-- generated:cluster-bench -->"
END = "<!-- /generated:cluster-bench -->"
GENERATED = re.compile(re.escape(BEGIN) + r"\n.*?" + re.escape(END), re.S)


@dataclass(frozen=True)
class Attempt:
    """One ride request of the failover run: wall-clock times (s), status (0 = no answer)."""

    sent: float
    done: float
    status: int
    ride_id: str | None
    burst: bool = False


def silence_s(before: Iterable[float], after: Iterable[float], kill: float) -> float | None:
    """Seconds from the last event at or before `kill` to the first one after it; None when
    either side has none (no event before the kill, or none came back within the run)."""
    last = max((t for t in before if t <= kill), default=None)
    first = min((t for t in after if t > kill), default=None)
    if last is None or first is None:
        return None
    return first - last


def no_202_s(attempts: Sequence[Attempt], kill: float) -> float | None:
    """From the last 202 answered before the kill to the first 202 of a request *sent* after
    it: a request sent before the kill and answered after it may have been written before the
    primary died, so it does not end the outage."""
    before = [a.done for a in attempts if a.status == 202]
    after = [a.done for a in attempts if a.status == 202 and a.sent > kill]
    return silence_s(before, after, kill)


def account_losses(
    acknowledged: Sequence[str], http_status: dict[str, int], in_stream: set[str]
) -> dict[str, Any]:
    """Acknowledged (202) rides that the platform no longer knows after the failover: a 404 on
    GET /v1/rides/{id}, or no `ride.requested` event in the market's stream. A ride whose GET
    gave neither 200 nor 404 is `unknown` (not counted as lost, not as kept)."""
    gone = sorted(r for r in acknowledged if http_status.get(r) == 404)
    unknown = sorted(r for r in acknowledged if http_status.get(r) not in (200, 404))
    missing = sorted(r for r in acknowledged if r not in in_stream)
    return {
        "acknowledged": len(acknowledged),
        "lost_get_404": gone,
        "missing_from_stream": missing,
        "lost": sorted(set(gone) | set(missing)),
        "unknown": unknown,
    }


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def _on(flag: bool) -> str:
    return "on" if flag else "off"


# a failover run's table after its "pair" column: header → cell
RUN_CELLS: dict[str, Callable[[dict[str, Any]], str]] = {
    "acks": lambda run: _on(run["acks"]),
    "no offers": lambda run: _s(run["no_offer_s"]),
    "no 202": lambda run: _s(run["no_202_s"]),
    "burst acked": lambda run: f"{run['burst_acked']} of {run['burst']}",
    "lost": lambda run: f"**{len(run['loss']['lost'])}** of {run['loss']['acknowledged']}",
    "404 / not in stream": lambda run: (
        f"{len(run['loss']['lost_get_404'])} / {len(run['loss']['missing_from_stream'])}"
    ),
    "promoted": lambda run: "yes" if run["promoted"] else "**no**",
    "answers": lambda run: ", ".join(f"{k}×{v}" for k, v in sorted(run["statuses"].items())),
}


def failover_rows(runs: Sequence[dict[str, Any]]) -> list[list[str]]:
    """One row a run; runs come in off/on pairs."""
    return [
        [str(i // 2 + 1), *(cell(run) for cell in RUN_CELLS.values())] for i, run in enumerate(runs)
    ]


SUMMARY_COLUMNS = ("acks", "runs", "no offers (median)", "no 202 (median)", "lost")


def _median_s(values: Iterable[float | None]) -> str:
    known = [v for v in values if v is not None]
    return _s(median(known)) if known else "—"


def failover_summary(runs: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Per acks setting: the median outages and the rides lost over all its runs."""
    rows = []
    for acks in (False, True):
        if mine := [r for r in runs if r["acks"] == acks]:
            lost = sum(len(r["loss"]["lost"]) for r in mine)
            acknowledged = sum(r["loss"]["acknowledged"] for r in mine)
            rows.append(
                [
                    _on(acks),
                    str(len(mine)),
                    _median_s(r["no_offer_s"] for r in mine),
                    _median_s(r["no_202_s"] for r in mine),
                    f"{lost} of {acknowledged}",
                ]
            )
    return rows


E2E_METRICS = (
    ("pings_per_s", "pings/s accepted"),
    ("rides_per_s", "rides/s accepted (202)"),
    ("offer_p50_ms", "request→offered p50 (ms)"),
    ("offer_p99_ms", "request→offered p99 (ms)"),
    ("lag_s", "worst consumer lag (s)"),
)
E2E_COLUMNS = ("metric", "one server (per pair)", "cluster (per pair)", "cluster ÷ one server")


def e2e_rows(steps: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Per metric: each contender's value per pair, and cluster ÷ one server per pair."""
    single = [s for s in steps if s["contender"] == "one server"]
    cluster = [s for s in steps if s["contender"] == "cluster"]
    rows = []
    for key, label in E2E_METRICS:
        ours = [float(s[key]) for s in cluster if s[key] is not None]
        peer = [float(s[key]) for s in single if s[key] is not None]
        rows.append(
            [
                label,
                ", ".join(fmt_number(v) for v in peer) or "—",
                ", ".join(fmt_number(v) for v in ours) or "—",
                fmt_paired(ours, peer) if len(ours) == len(peer) else "—",
            ]
        )
    return rows


def render_section(results: dict[str, Any]) -> str:
    """The generated part of docs/scaling.md's figures (tables only; prose stays by hand)."""
    out = [
        BEGIN,
        "",
        f"_Measured {results['date']} by `{results['command']}` on {results['machine']}; "
        f"load average at start {results['load_avg_at_start']}._",
        "",
    ]
    if failover := results.get("failover"):
        cfg, runs = failover["config"], failover["runs"]
        out += [
            f"**Failover** (`ridepulse up --no-sim --cluster --markets sf,nyc --primaries 3 "
            f"--replicas 1`, {cfg['drivers']} drivers, {cfg['rides_per_s']:g} rides/s, a burst "
            f"of {cfg['burst']} concurrent requests at the SIGKILL of `{{sf}}`'s primary; "
            "`RIDEPULSE_RIDE_REPLICA_ACKS` off and on, alternating):",
            "",
            render_table(SUMMARY_COLUMNS, failover_summary(runs)),
            "",
            render_table(("pair", *RUN_CELLS), failover_rows(runs)),
            "",
        ]
    if e2e := results.get("e2e"):
        cfg = e2e["config"]
        out += [
            f"**Cluster end to end** (sf and nyc, {fmt_number(cfg['pings_per_s'])} pings/s and "
            f"{cfg['rides_per_s']:g} rides/s per market, steps of {cfg['seconds']:g} s "
            "alternating one server / 3-primary cluster with 1 replica each, both platforms up "
            "for the whole run):",
            "",
            render_table(E2E_COLUMNS, e2e_rows(e2e["steps"])),
            "",
        ]
    return "\n".join([*out, END])


def render_into(page: str, results: dict[str, Any]) -> str:
    """`page` with its generated block replaced (appended when it has none); the rest stays."""
    section = render_section(results)
    if GENERATED.search(page):
        return GENERATED.sub(lambda _: section, page, count=1)
    return page.rstrip("\n") + "\n\n" + section + "\n"
