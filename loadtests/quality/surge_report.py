"""The surge on/off comparison of docs/dispatch-quality.md (issue 13.4): the spike city played
with surge and again with surge off (cap 1) on the same seed. Pure over the runs' facts and
records, so it is unit-tested without a platform."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.quality.figures import finish, pyplot, save
from loadtests.quality.records import RideRecord

ON, OFF = "spike", "spike-surge-off"
SURGE_PNG = "img/quality-surge.png"
BACK_TO = 1.0  # "fallen back": the market's highest multiplier is 1.0 again


@dataclass(frozen=True, slots=True)
class SurgeRun:
    requests: int  # riders who asked for a quote
    declined_share: float | None  # of those, declined for price
    rides: int
    fulfilment: float | None  # of requested rides, a driver accepted before the deadline
    served_share: float | None  # of everyone who asked: got a driver in time
    mean_wait_s: float | None  # request → driver at the pickup
    utilisation: float | None
    peak: float  # highest multiplier sampled
    back_after_s: float | None  # after the let-out ends, until the multiplier is BACK_TO again


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def back_after(samples: Sequence[Sequence[float]], ends_s: float) -> float | None:
    """Seconds from `ends_s` until the sampled peak multiplier is back to 1.0 and stays there;
    0 when it never rose; None when it is still up at the end of the run."""
    last_up = None
    for t, peak in samples:
        if peak > BACK_TO:
            last_up = t
    if last_up is None:
        return 0.0
    later = [t for t, _ in samples if t > last_up]
    if not later:
        return None
    return max(0.0, later[0] - ends_s)


def surge_run(facts: dict[str, Any], records: Sequence[RideRecord], ends_s: float) -> SurgeRun:
    served = sum(r.fulfilled for r in records)
    waits = [(r.arrived_ms - r.requested_ms) / 1000 for r in records if r.arrived_ms is not None]
    samples = facts.get("surge_samples", [])
    return SurgeRun(
        requests=facts["requests"],
        declined_share=_share(facts["declined_for_price"], facts["requests"]),
        rides=len(records),
        fulfilment=_share(served, len(records)),
        served_share=_share(served, facts["requests"]),
        mean_wait_s=sum(waits) / len(waits) if waits else None,
        utilisation=facts.get("utilisation"),
        peak=max((p for _, p in samples), default=1.0),
        back_after_s=back_after(samples, ends_s),
    )


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def surge_rows(runs: dict[str, SurgeRun]) -> list[list[str]]:
    rows = []
    for name, label in ((ON, "surge on"), (OFF, "surge off (cap 1)")):
        run = runs.get(name)
        if run is None:
            continue
        back = "still up at the end" if run.back_after_s is None else f"{run.back_after_s:.0f} s"
        rows.append(
            [
                label,
                str(run.requests),
                _pct(run.declined_share),
                str(run.rides),
                _pct(run.fulfilment),
                _pct(run.served_share),
                _s(run.mean_wait_s),
                _pct(run.utilisation),
                f"{run.peak:.1f}x",
                back,
            ]
        )
    return rows


SURGE_HEADER = (
    "run",
    "riders quoted",
    "declined for price",
    "rides",
    "fulfilment",
    "served of all quoted",
    "mean wait to pickup (s)",
    "driver utilisation",
    "peak multiplier",
    "back to 1.0x after the let-out",
)


def surge_verdict(runs: dict[str, SurgeRun]) -> str:
    on, off = runs.get(ON), runs.get(OFF)
    if on is None or off is None:
        return "_The surge pair has not been played yet (`make quality`)._"
    parts = []
    if on.fulfilment is not None and off.fulfilment is not None:
        gain = 100 * (on.fulfilment - off.fulfilment)
        parts.append(f"fulfilment {gain:+.0f} points with surge")
    if on.mean_wait_s is not None and off.mean_wait_s is not None and off.mean_wait_s:
        change = 100 * (on.mean_wait_s / off.mean_wait_s - 1)
        parts.append(f"mean wait {change:+.0f} %")
    better = (
        on.fulfilment is not None
        and off.fulfilment is not None
        and on.fulfilment > off.fulfilment
        and on.mean_wait_s is not None
        and off.mean_wait_s is not None
        and on.mean_wait_s < off.mean_wait_s
    )
    goal = "met" if better else "not met"
    back = (
        "did not fall back within the run"
        if on.back_after_s is None
        else f"fell back to 1.0x {on.back_after_s:.0f} s after the let-out"
    )
    return (
        f"Surge on against off, same seed: {', '.join(parts)}; the multiplier peaked at "
        f"{on.peak:.1f}x and {back}. Goal (fulfilment and waits better with surge): **{goal}** "
        "in this run (one pair: a direction, not a measured effect size)."
    )


def plot_surge(facts: dict[str, Any], path: Path, ends_s: float, starts_s: float) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3))
    for name, label, style in ((ON, "surge on", "-"), (OFF, "surge off (cap 1)", "--")):
        samples = facts.get(name, {}).get("surge_samples", [])
        if samples:
            ax.plot([t for t, _ in samples], [p for _, p in samples], style, label=label)
    ax.axvspan(starts_s, ends_s, color="orange", alpha=0.15, label="let-out")
    ax.set_xlabel("seconds since the first request")
    ax.set_ylabel("highest multiplier")
    finish(ax)
    save(fig, path)
