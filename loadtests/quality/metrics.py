"""ETA accuracy and fulfilment maths over ride records: pure, so unit tests pin them exactly."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from loadtests.quality.records import RideRecord
from ridepulse.geo import haversine_m
from ridepulse.travel import DETOUR_FACTOR

# The baseline every learned ETA must beat: straight line at one constant urban speed, no
# detour factor and no per-cell speeds. 8 m/s matches ridepulse.travel.DEFAULT_SPEED_MPS so the
# baseline is exactly "the model before it has learned anything, minus the detour factor".
BASELINE_SPEED_MPS = 8.0


def baseline_eta_s(
    from_lat: float,
    from_lon: float,
    to_lat: float,
    to_lon: float,
    speed_mps: float = BASELINE_SPEED_MPS,
) -> float:
    return haversine_m(from_lat, from_lon, to_lat, to_lon) / speed_mps


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default). Needs at least one value."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True, slots=True)
class ErrorSummary:
    n: int
    mae_s: float
    mape: float | None  # fraction (0.25 = 25 %); None when every actual is zero
    median_abs_s: float
    p95_abs_s: float


def error_summary(pairs: Iterable[tuple[float, float]]) -> ErrorSummary | None:
    """`pairs` are (predicted, actual) seconds. MAPE skips zero actuals (undefined there)."""
    items = list(pairs)
    if not items:
        return None
    abs_errors = [abs(p - a) for p, a in items]
    ratios = [abs(p - a) / a for p, a in items if a > 0]
    return ErrorSummary(
        n=len(items),
        mae_s=sum(abs_errors) / len(abs_errors),
        mape=sum(ratios) / len(ratios) if ratios else None,
        median_abs_s=percentile(abs_errors, 0.5),
        p95_abs_s=percentile(abs_errors, 0.95),
    )


def improvement(model_mae: float, baseline_mae: float) -> float:
    """How much lower the model's MAE is than the baseline's, as a fraction (0.2 = 20 % lower)."""
    if baseline_mae <= 0:
        return 0.0
    return 1.0 - model_mae / baseline_mae


def mae_by_minute(
    rows: Iterable[tuple[float, float, float]], bucket_min: float = 1.0
) -> list[tuple[float, float, int]]:
    """`rows` are (minutes since start, predicted, actual); returns (bucket start, MAE, n) sorted,
    for the "error shrinks as the model warms up" plot."""
    buckets: dict[int, list[float]] = {}
    for minute, predicted, actual in rows:
        buckets.setdefault(math.floor(minute / bucket_min), []).append(abs(predicted - actual))
    return [
        (index * bucket_min, sum(errs) / len(errs), len(errs))
        for index, errs in sorted(buckets.items())
    ]


def fulfilment_rate(fulfilled: Iterable[bool]) -> float | None:
    flags = list(fulfilled)
    return sum(flags) / len(flags) if flags else None


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    """How dispatch served one run's rides."""

    rides: int
    mean_pickup_s: float | None  # matched → driver at pickup, over rides that got there
    p90_pickup_s: float | None
    fulfilment: float | None  # share of rides a driver accepted before the deadline
    offered_p50_ms: float | None  # request → first offer, over rides that were offered
    offered_p99_ms: float | None


def service_summary(records: Sequence[RideRecord]) -> ServiceSummary:
    pickups = [r.pickup_actual_s for r in records if r.pickup_actual_s is not None]
    offered = [float(r.offered_ms - r.requested_ms) for r in records if r.offered_ms is not None]
    return ServiceSummary(
        rides=len(records),
        mean_pickup_s=sum(pickups) / len(pickups) if pickups else None,
        p90_pickup_s=percentile(pickups, 0.9) if pickups else None,
        fulfilment=fulfilment_rate(r.fulfilled for r in records),
        offered_p50_ms=percentile(offered, 0.5) if offered else None,
        offered_p99_ms=percentile(offered, 0.99) if offered else None,
    )


def eta_pairs(
    records: Iterable[RideRecord], phase: str, estimator: str
) -> list[tuple[float, float]]:
    """(predicted, actual) for `phase` ("pickup" or "trip") by `estimator`, over the rides that
    have both: "model" (RidePulse's ETA), "baseline" (the straight line at 8 m/s), or "cold"
    (the baseline × the detour factor: RidePulse's model before it has learned any speed, so
    what learning adds is the gap between "cold" and "model")."""
    out: list[tuple[float, float]] = []
    for r in records:
        actual = r.pickup_actual_s if phase == "pickup" else r.trip_actual_s
        if phase == "pickup":
            predicted = r.pickup_pred_s if estimator == "model" else r.pickup_base_s
        else:
            predicted = r.trip_pred_s if estimator == "model" else r.trip_base_s
        if estimator == "cold" and predicted is not None:
            predicted *= DETOUR_FACTOR
        if actual is not None and predicted is not None:
            out.append((predicted, actual))
    return out
