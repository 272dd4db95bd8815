"""Surge as complex event processing: demand and supply per H3 cell over a sliding window,
smoothed over neighbouring cells, turned into a capped, quantised multiplier, and published
with hysteresis. Pure: every function takes ``now_ms``, so tests replay time exactly."""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping

from ridepulse.geo import ring

DEFAULT_WINDOW_MS = 5 * 60_000
DEFAULT_CAP = 3.0
DEFAULT_STEP = 0.1
NEIGHBOUR_WEIGHT = 0.5  # a ring-d cell counts weight**d: riders and drivers cross a 531 m hexagon
RATIO_THRESHOLD = 1.0  # surge starts when requests outnumber drivers
SENSITIVITY = 0.5  # +0.5x per extra request per driver: 2:1 gives 1.5x, 3:1 gives 2.0x
MIN_SUPPLY = 1.0  # a cell is never counted as having fewer than one driver (see compute_surge)
MIN_PUBLISHED_CHANGE = 0.2


class SurgeWindow:
    """Ride requests seen in the last ``window_ms``, and the available drivers now.

    Requests expire from a deque in time order. Supply is not windowed: each surge tick
    replaces it with the drivers matching's geo index holds (pricing/supply.py).
    """

    def __init__(self, window_ms: int = DEFAULT_WINDOW_MS) -> None:
        if window_ms <= 0:
            raise ValueError(f"window_ms must be positive, got {window_ms}")
        self.window_ms = window_ms
        self._requests: deque[tuple[int, str, str]] = deque()  # (ts ms, cell, request id)
        self._request_ids: set[str] = set()
        self._demand: Counter[str] = Counter()
        self._supply: Counter[str] = Counter()
        self._latest_ms = 0  # newest timestamp seen: entries older than a window are late

    def add_request(self, cell: str, ts_ms: int, request_id: str = "") -> bool:
        """Count one ride request in ``cell``; False if it was not counted (too late, or its
        ``request_id`` is already in the window — a redelivered or replayed request counts once)."""
        if self._too_late(ts_ms) or (request_id and request_id in self._request_ids):
            return False
        self._requests.append((ts_ms, cell, request_id))
        self._demand[cell] += 1
        if request_id:
            self._request_ids.add(request_id)
        return True

    def replace_supply(self, cells: Mapping[str, str]) -> None:
        """Supply becomes exactly these drivers (id → cell)."""
        self._supply = Counter(cells.values())

    def evict(self, now_ms: int) -> None:
        """Forget everything at or before ``now_ms - window_ms``."""
        cutoff = now_ms - self.window_ms
        requests, demand = self._requests, self._demand
        while requests and requests[0][0] <= cutoff:
            _, cell, request_id = requests.popleft()
            self._request_ids.discard(request_id)
            demand[cell] -= 1
            if not demand[cell]:
                del demand[cell]

    def counts(self, now_ms: int) -> tuple[dict[str, int], dict[str, int]]:
        """(demand by cell, supply by cell) in the window ending at ``now_ms``."""
        self.evict(now_ms)
        return dict(self._demand), dict(self._supply)

    def _too_late(self, ts_ms: int) -> bool:
        self._latest_ms = max(self._latest_ms, ts_ms)
        return ts_ms <= self._latest_ms - self.window_ms


def _smooth(counts: Mapping[str, float], k_ring: int, weight: float) -> dict[str, float]:
    """Spread each cell's count over its k-ring, ring d weighted ``weight**d``."""
    smoothed: dict[str, float] = {}
    for cell, count in counts.items():
        for d in range(k_ring + 1):
            share = count * weight**d
            for near in ring(cell, d):
                smoothed[near] = smoothed.get(near, 0.0) + share
    return smoothed


def quantise(multiplier: float, step: float = DEFAULT_STEP) -> float:
    """Round half-up to a multiple of ``step`` (1.149 -> 1.1, 1.15 -> 1.2)."""
    # The 1e-9 keeps 1.15 (stored as 1.1499999...) on the side people expect.
    return round(math.floor(multiplier / step + 0.5 + 1e-9) * step, 6)


def compute_surge(
    demand_by_cell: Mapping[str, float],
    supply_by_cell: Mapping[str, float],
    k_ring: int = 1,
    cap: float = DEFAULT_CAP,
    step: float = DEFAULT_STEP,
    *,
    neighbour_weight: float = NEIGHBOUR_WEIGHT,
    threshold: float = RATIO_THRESHOLD,
    sensitivity: float = SENSITIVITY,
) -> dict[str, float]:
    """Multiplier of every cell that surges (absent cells are 1.0).

    Demand and supply are both smoothed over the k-ring, so sparse counts borrow from the
    neighbourhood and prices do not jump at a hexagon's edge. The ratio is
    demand / max(supply, MIN_SUPPLY); the multiplier is
    ``1 + sensitivity * max(0, ratio - threshold)``, quantised to ``step`` and capped.
    The one-driver floor keeps a lone request in an empty cell from maxing out the price, and
    makes a neighbour's echo of a hot cell (half its demand, no drivers) weaker than the hot cell.
    """
    demand = _smooth(demand_by_cell, k_ring, neighbour_weight)
    supply = _smooth(supply_by_cell, k_ring, neighbour_weight)
    surge: dict[str, float] = {}
    for cell, wanted in demand.items():
        ratio = wanted / max(supply.get(cell, 0.0), MIN_SUPPLY)
        multiplier = min(cap, quantise(1.0 + sensitivity * max(0.0, ratio - threshold), step))
        if multiplier > 1.0:
            surge[cell] = multiplier
    return surge


class SurgeState:
    """The multipliers last published, changed only by steps of ``min_change`` so they do not flap.

    A cell whose computed surge is back to 1.0 is always cleared, even by a smaller step —
    otherwise a cell could stay stuck at 1.1 after its demand is gone.
    """

    def __init__(self, min_change: float = MIN_PUBLISHED_CHANGE) -> None:
        self.min_change = min_change
        self.published: dict[str, float] = {}  # surging cells only; absent means 1.0

    def update(self, computed: Mapping[str, float]) -> dict[str, float]:
        """Apply a fresh ``compute_surge`` result; return the cells whose published value changed
        (1.0 for cells cleared, so consumers can drop them)."""
        changed: dict[str, float] = {}
        for cell in self.published.keys() - computed.keys():
            changed[cell] = 1.0
        for cell, target in computed.items():
            current = self.published.get(cell, 1.0)
            # The epsilon absorbs float error: 1.4 - 1.2 is 0.19999999999999996.
            if (target <= 1.0 and current > 1.0) or abs(target - current) >= self.min_change - 1e-9:
                changed[cell] = target
        for cell, value in changed.items():
            if value <= 1.0:
                self.published.pop(cell, None)
            else:
                self.published[cell] = value
        return changed
