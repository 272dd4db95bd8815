"""Pings that would not change what matching knows are not sent to Valkey at all.

The geo index answers "who is available near here, nearest first, and pinged lately". A ping
changes that answer only if the driver moved far enough to matter, or if the driver's
freshness (`drivers_seen`) is getting old. Every other ping costs Valkey the whole index update
(two HMGETs, an HSET, a ZADD and a GEOADD of one driver, inside the script that holds the
server) for nothing. Valkey is one thread shared with every ride command, so the cheapest
update is the one not made.

A driver's ping is written when any of these holds:
- this process has not written the driver within `refresh_ms` (the freshness it keeps is that
  coarse: a third of `driver_stale_s` by default, 10 s of 30 s);
- the driver moved `min_move_m` or more from the position last written (20 m by default, the
  size of a phone's GPS error in a city; 0 writes every ping);
- the driver was never written by this process (a new driver, or a restart);
and it is newer than every ping of the driver this process wrote or skipped (an older one is
superseded: the script would ignore it, or it would move the driver back past a newer ping).

What is skipped is only ever a superseded ping, or one whose driver this process wrote recently
and nearby, so:
- a driver is never stale because of the filter (written at least every `refresh_ms`);
- a driver going available is indexed at the position last written (within `min_move_m`), by
  the ride scripts' `index_driver`, atomically as before;
- several matching-geo processes each keep their own memory; each writes at least what it
  would alone, so sharing the stream never leaves a driver stale (where the driver stands may
  lag: see the replicas below).

The positions hash (which eta, the dashboard and `GET /v1/drivers/{id}` read) is then up to
`min_move_m` and `refresh_ms` behind the newest ping.

That holds with several batches in flight (`geo_batches_in_flight`), which finish in any order:
- a ping skipped as near the written position is remembered as the driver's newest (its ts), so
  an older ping of a batch that finishes later is superseded rather than written over the
  position that stands for it (seen: a driver's newest ping skipped 10 m from the one written,
  then a batch read before it wrote an older ping 895 m away, and the index stayed there);
- a driver in a batch being written (`writing`: from its selection to its scripts' last answer)
  is never skipped as near by another batch: the position it is compared with may be about to
  change. Its ping is written, and the script's rule (the newest ts wins) orders the two;
- what is remembered never goes back to an older ping.
Batches are not made to take turns: that kept Valkey idle while a batch's Python ran and cost
matching-geo 16–43 % of its backlog drain (6 alternated pairs, 2026-12-07).

Several matching-geo replicas each remember only what they wrote, so one may skip a ping as near
its own last write just after another replica wrote an older, farther ping of the driver; the
index is then behind by what the driver moved between those pings, for at most `refresh_ms`.

Of the pings written, only those whose driver's `drivers_seen` stamp from this process is
`seen_step_ms` old (half of `refresh_ms`: 5 s by default) restamp it; `select` returns them
apart from the rest. Moving a member of a fleet-sized zset to its tail was 2.4 of the script's
5.6 µs per ping (measured 2026-12-06 on 200k drivers); a driver pinging every 4 s now pays it
every other ping, and its stamp is at most a step plus a ping interval old, well inside
`driver_stale_s`."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from ridepulse.contracts.telemetry_decode import PingLike

_M_PER_DEG = 111_320.0
_RAD = math.pi / 180


# per driver written: lat, lon, the phone's ts, and this process's monotonic ms when written
# and when it last restamped the driver's `drivers_seen`
_Written = tuple[float, float, int, int, int]


@dataclass
class PositionFilter:
    min_move_m: float
    refresh_ms: int
    clock_ms: Callable[[], int] = lambda: int(time.monotonic() * 1000)
    skipped: int = 0  # pings not written since start (a counter, like `conflated`)
    _written: dict[tuple[str, str], _Written] = field(default_factory=dict)
    _pruned_at_ms: int = 0
    # market → the drivers of each batch being written: a set per batch (13 ms for 200k new
    # drivers) rather than a count per driver kept by select and wrote (80 ms more, 2026-12-07)
    _writing: dict[str, list[set[str]]] = field(default_factory=dict)

    @property
    def seen_step_ms(self) -> int:
        return self.refresh_ms // 2

    def select(
        self, market: str, newest: Iterable[PingLike]
    ) -> tuple[list[PingLike], list[PingLike]]:
        """Of each driver's newest ping of a batch, those that must be written: those whose
        `drivers_seen` stamp is due, and the rest."""
        now = self.clock_ms()
        self._prune(now)
        due = now - self.refresh_ms
        stamp_due = now - self.seen_step_ms
        min_sq = self.min_move_m * self.min_move_m
        written = self._written
        writing = self._writing.get(market)
        stamp: list[PingLike] = []
        keep: list[PingLike] = []
        for ping in newest:
            key = (market, ping.driver_id)
            held = written.get(key)
            if held is not None:
                lat, lon, ts, at, stamp_at = held
                if ping.ts <= ts:  # not newer than one written or skipped as near: superseded
                    self.skipped += 1
                    continue
                if at > due and not (writing and any(ping.driver_id in w for w in writing)):
                    # equirectangular: exact enough at tens of metres
                    dy = (ping.lat - lat) * _M_PER_DEG
                    dx = (ping.lon - lon) * _M_PER_DEG * math.cos(lat * _RAD)
                    if dx * dx + dy * dy < min_sq:
                        # the written position stands for this ping, and for its ts: an older
                        # ping (a batch that finishes later) must not be written over it
                        written[key] = (lat, lon, ping.ts, at, stamp_at)
                        self.skipped += 1
                        continue
            (stamp if held is None or held[4] <= stamp_due else keep).append(ping)
        return stamp, keep

    def wrote(self, market: str, pings: Sequence[PingLike], stamped: int | None = None) -> None:
        """Remember what `select` chose and the script took, the first `stamped` (all by
        default) with a new seen stamp. A ping older than the one remembered (another batch's,
        written meanwhile) leaves the memory as it is: the script kept the newer one."""
        now = self.clock_ms()
        written = self._written
        stamped = len(pings) if stamped is None else stamped
        for i, ping in enumerate(pings):
            key = (market, ping.driver_id)
            held = written.get(key)
            if held is not None and held[2] > ping.ts:
                continue
            stamp_ms = now if i < stamped or held is None else held[4]
            written[key] = (ping.lat, ping.lon, ping.ts, now, stamp_ms)

    @contextlib.contextmanager
    def writing(self, market: str, pings: Iterable[PingLike]) -> Iterator[None]:
        """While a batch `select` chose is being written (its scripts sent, answered or failed):
        another batch does not skip its drivers as near. Enter it before any await."""
        drivers = {ping.driver_id for ping in pings}
        batches = self._writing.setdefault(market, [])
        batches.append(drivers)
        try:
            yield
        finally:
            batches[:] = [b for b in batches if b is not drivers]

    def _prune(self, now: int) -> None:
        """Forget drivers not written for `refresh_ms`: their next ping is written anyway, so
        memory follows the active fleet, not every driver ever seen."""
        if now - self._pruned_at_ms < self.refresh_ms:
            return
        self._pruned_at_ms = now
        cutoff = now - self.refresh_ms
        self._written = {k: v for k, v in self._written.items() if v[3] > cutoff}
