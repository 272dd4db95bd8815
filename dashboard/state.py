"""The city as the page sees it, and the changes since the last delta.

Pure: the reader feeds it what it read, the hub asks for deltas and snapshots. Every setter
diffs against the current state, so a full reload after an outage yields only what changed."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from dashboard.changes import Changes, sync_into
from dashboard.config import FeedConfig
from dashboard.drivers import Driver, sample_drivers
from dashboard.event_log import Entry
from dashboard.kpis import Match, compute_kpis
from dashboard.ride_view import Ride, finished_at, reached_at
from dashboard.series import append_point, copy_series, empty_series
from dashboard.services_board import ServiceBoard
from dashboard.surge_cells import surge_cell


class CityState:
    def __init__(self, market: dict[str, Any], config: FeedConfig, *, stale_after_ms: int) -> None:
        self.market = market
        self.config = config
        self.drivers: dict[str, Driver] = {}
        self.driver_statuses: dict[str, int] = {}
        self.rides: dict[str, Ride] = {}
        self.surge: dict[str, dict[str, Any]] = {}
        self.ride_counts: dict[str, int] = {}
        self.dead_letters = 0
        self.matches: dict[tuple[str, int], Match] = {}
        self.board = ServiceBoard(stale_after_ms)
        self.services: list[dict[str, Any]] = []
        self.kpis: dict[str, Any] = {}
        self.events: deque[Entry] = deque(maxlen=config.event_log_size)
        self.series = empty_series()
        self._drivers, self._rides, self._surge = Changes(), Changes(), Changes()
        self._events: list[Entry] = []
        self._points: deque[dict[str, Any]] = deque()
        self._kpis_changed = self._services_changed = False
        self._dirty, self._refreshed_at = True, 0

    def touch(self) -> None:
        """Something KPIs depend on changed: recompute them at the next tick."""
        self._dirty = True

    # --- what the reader feeds in -------------------------------------------------------
    def set_drivers(self, positions: Mapping[str, str], statuses: Mapping[str, str]) -> None:
        self._dirty = True
        dots, self.driver_statuses = sample_drivers(positions, statuses)
        sync_into(self.drivers, dots, self._drivers)

    def set_ride(self, ride_id: str, ride: Ride | None, now_ms: int) -> None:
        """The ride's projection as just read; None when the hash is gone."""
        self._dirty = True
        if ride is not None:
            self._note_match(ride)
            ended = finished_at(ride)
            if ended is not None and now_ms - ended > self.config.finished_ride_ttl_ms:
                ride = None
        if ride is None:
            if self.rides.pop(ride_id, None) is not None:
                self._rides.drop(ride_id)
        elif self.rides.get(ride_id) != ride:
            self.rides[ride_id] = ride
            self._rides.put(ride_id, ride)

    def set_ride_counts(self, counts: Mapping[str, int]) -> None:
        self._dirty = True
        self.ride_counts = dict(counts)

    def set_surge(self, cells: Mapping[str, float]) -> None:
        self._dirty = True
        items = {
            cell: item for cell, m in cells.items() if (item := surge_cell(cell, m)) is not None
        }
        sync_into(self.surge, items, self._surge)

    def set_dead_letters(self, count: int) -> None:
        self._dirty = True
        self.dead_letters = count

    def observe_heartbeat(self, beat: Mapping[str, Any]) -> None:
        self.board.observe(beat)
        self._dirty = True

    def sync_heartbeats(self, beats: Mapping[tuple[str, str], Mapping[str, Any] | None]) -> None:
        self.board.sync(beats)
        self._dirty = True

    def add_events(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            self.events.append(entry)
            self._events.append(entry)

    def add_series_point(self, point: dict[str, Any]) -> None:
        """Queued; it joins `series` when a delta carries it, so snapshots match the deltas."""
        self._points.append(point)

    def maybe_refresh(self, now_ms: int, every_ms: int = 1000, least_ms: int = 0) -> None:
        """Refresh when something changed (at most every `least_ms`), and at least every
        `every_ms` for the time windows."""
        since = now_ms - self._refreshed_at
        if (self._dirty and since >= least_ms) or since >= every_ms:
            self.refresh(now_ms)

    def refresh(self, now_ms: int) -> None:
        """Time-dependent parts: finished rides age out, old matches leave the window, KPIs and
        service staleness are recomputed."""
        self._dirty, self._refreshed_at = False, now_ms
        self._prune(now_ms)
        rows = self.board.rows(now_ms)
        if rows != self.services:
            self.services, self._services_changed = rows, True
        self._refresh_kpis(now_ms)

    def _refresh_kpis(self, now_ms: int) -> None:
        kpis = compute_kpis(
            driver_statuses=self.driver_statuses,
            rides=self.rides.values(),
            ride_counts=self.ride_counts,
            matches=self.matches.values(),
            surge=(c["multiplier"] for c in self.surge.values()),
            dead_letters=self.dead_letters,
            now_ms=now_ms,
        )
        if kpis != self.kpis:
            self.kpis, self._kpis_changed = kpis, True

    def _note_match(self, ride: Ride) -> None:
        matched_at, requested_at = reached_at(ride, "matched"), ride.get("requested_at")
        if matched_at is None or requested_at is None:
            return
        key = (ride["ride_id"], matched_at)
        known = self.matches.get(key)
        if known is None or (known.pickup_eta_s is None and ride.get("pickup_eta_s") is not None):
            self.matches[key] = Match(
                ride["ride_id"], requested_at, matched_at, ride.get("pickup_eta_s")
            )

    def _prune(self, now_ms: int) -> None:
        window = self.config.match_window_ms
        for key in [k for k, m in self.matches.items() if now_ms - m.matched_at > window]:
            del self.matches[key]
        finished = sorted(
            (
                (ended, ride_id)
                for ride_id, ride in self.rides.items()
                if (ended := finished_at(ride)) is not None
            ),
            reverse=True,
        )
        for rank, (ended, ride_id) in enumerate(finished):
            if (
                rank >= self.config.finished_ride_limit
                or now_ms - ended > self.config.finished_ride_ttl_ms
            ):
                del self.rides[ride_id]
                self._rides.drop(ride_id)

    # --- what the hub takes out ---------------------------------------------------------
    def has_pending(self) -> bool:
        return bool(
            self._drivers
            or self._rides
            or self._surge
            or self._events
            or self._points
            or self._kpis_changed
            or self._services_changed
        )

    def take_delta(self, seq: int) -> dict[str, Any] | None:
        """The changes since the last delta, as message `seq`; None when nothing changed.

        At most one series point per delta keeps the protocol simple; a backlog (only after
        a stalled loop) drains one point per tick."""
        if not self.has_pending():
            return None
        delta: dict[str, Any] = {"kind": "delta", "seq": seq}
        for name, pending in (
            ("drivers", self._drivers),
            ("rides", self._rides),
            ("surge", self._surge),
        ):
            if (part := pending.take()) is not None:
                delta[name] = part
        if self._kpis_changed:
            delta["kpis"], self._kpis_changed = self.kpis, False
        if self._services_changed:
            delta["services"], self._services_changed = self.services, False
        if self._events:
            delta["events"], self._events = self._events[-self.config.event_log_size :], []
        if self._points:
            delta["series_point"] = point = self._points.popleft()
            append_point(self.series, point, self.config.series_points)
        return delta

    def snapshot(self, seq: int, epoch: str) -> dict[str, Any]:
        """The whole state as message `seq`: consistent right after `take_delta` (the hub only
        asks then), since what is still queued travels in the next delta."""
        return {
            "kind": "snapshot",
            "epoch": epoch,
            "seq": seq,
            "market": self.market,
            "limits": {"events": self.config.event_log_size, "series": self.config.series_points},
            "drivers": [self.drivers[k] for k in sorted(self.drivers)],
            "rides": [self.rides[k] for k in sorted(self.rides)],
            "surge": [self.surge[k] for k in sorted(self.surge)],
            "kpis": self.kpis,
            "services": self.services,
            "events": list(self.events),
            "series": copy_series(self.series),
        }
