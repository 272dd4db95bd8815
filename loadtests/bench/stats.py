"""Pure statistics of repetitions: medians, percentiles, ratios to a peer, paired ratios."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def ratio(ours: float, peer: float) -> float | None:
    """ours / peer, or None when the peer measured nothing (no meaningful ratio)."""
    return ours / peer if peer > 0 else None


def spread(values: Sequence[float]) -> float:
    """(max - min) / median: how noisy the repetitions were (0.05 = 5 %)."""
    mid = median(values)
    return (max(values) - min(values)) / mid if mid else 0.0


@dataclass(frozen=True)
class PairedRatio:
    """ours/peer per repetition, each pair measured side by side in the same rep: the machine's
    drift between reps cancels out of each pair, and the spread of the pairs says how far one
    run's ratio can be trusted."""

    pairs: tuple[float, ...]

    @property
    def median(self) -> float:
        return median(self.pairs)

    @property
    def low(self) -> float:
        return min(self.pairs)

    @property
    def high(self) -> float:
        return max(self.pairs)

    def verdict(self, target: float) -> bool | None:
        """Met when every pair is at or above the target, missed when every pair is below;
        None when the pairs straddle it (the run cannot tell)."""
        if self.low >= target:
            return True
        if self.high < target:
            return False
        return None


def paired_ratio(ours: Sequence[float], peer: Sequence[float]) -> PairedRatio | None:
    """Per-rep ratios of two contenders measured in the same reps (None without a valid pair)."""
    pairs = tuple(o / p for o, p in zip(ours, peer, strict=False) if p > 0)
    return PairedRatio(pairs) if pairs else None
