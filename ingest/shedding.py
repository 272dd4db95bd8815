"""Load shedding: when a group that dispatch depends on trails telemetry by more than
`telemetry_shed_lag_s` seconds, a share of the telemetry requests gets 429 with `Retry-After`
(ride requests never do); how big a share is ingest.admission's. The lag is checked every
`telemetry_shed_check_s`.

Lag is measured in seconds, not entries: an entry holds 1 to 1,000 pings, so an entry count
says nothing about time, and time is what makes matching's driver positions stale. Only the
groups in `telemetry_shed_groups` count (matching's geo index by default): an eta outage must
not 429 every ping and so starve matching of positions."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge
from redis.exceptions import RedisError

from ridepulse.bus.backlog import shedding_groups_backlog
from ridepulse.errors import Overloaded
from ridepulse.logs import get_logger
from ridepulse.pause import sleep_or_stop
from ridepulse.rides.clock import server_time_ms

if TYPE_CHECKING:
    from ingest.deps import Deps

MAX_RETRY_AFTER_S = 30

DISPATCH_LAG_SECONDS = Gauge(
    "rp_ingest_dispatch_lag_seconds",
    "Age of the oldest telemetry entry a shedding group has not yet read",
    ["stream", "group"],
)

PINGS_SHED = Counter("rp_telemetry_requests_shed_total", "Telemetry requests answered 429: shed")


TELEMETRY_ADMITTED = Gauge(
    "rp_ingest_telemetry_admitted_ratio", "Share of telemetry requests let in (1: no shedding)"
)


def shed(deps: Deps, behind: str) -> Overloaded:
    """The 429 of a shed telemetry request, counted; `behind` says what fell behind."""
    PINGS_SHED.inc()
    return Overloaded(
        f"telemetry is being shed: {behind} is behind; retry in {deps.shed_retry_after_s} s",
        retry_after_s=deps.shed_retry_after_s,
    )


def refuse_if_shedding(deps: Deps) -> None:
    if not deps.admission.admit():
        raise shed(deps, "dispatch")


@asynccontextmanager
async def batch_slot(deps: Deps) -> AsyncIterator[None]:
    """One of `Deps.batch_slots`, or 429 once none has freed up within `telemetry_shed_lag_s`:
    a ping held longer at the door is later than the lag at which shedding starts, and a queue
    there is one the consumers' lag never shows (seen: seconds of it, nothing shed)."""
    try:
        async with asyncio.timeout(deps.settings.telemetry_shed_lag_s):
            await deps.batch_slots.acquire()
    except TimeoutError:
        raise shed(deps, "ingest") from None
    try:
        yield
    finally:
        deps.batch_slots.release()


async def dispatch_lag_s(deps: Deps) -> float:
    """The worst lag, in seconds, of the shedding groups over every market's telemetry."""
    now_ms = await server_time_ms(deps.redis)  # stream ids carry the server's clock
    worst = 0.0
    for market in deps.markets.markets:
        stream = deps.keys(market.id).telemetry
        try:
            backlogs = await shedding_groups_backlog(deps.redis, deps.settings, stream, now_ms)
        except RedisError:
            continue  # no stream yet: nothing is behind
        for name, backlog in backlogs.items():
            DISPATCH_LAG_SECONDS.labels(stream, name).set(backlog.lag_s)
            worst = max(worst, backlog.lag_s)
    return worst


def retry_after_s(lag_s: float, threshold_s: float) -> int:
    """Come back about when the backlog above the threshold should be gone, within bounds."""
    return max(1, min(MAX_RETRY_AFTER_S, math.ceil(lag_s - threshold_s)))


async def watch_telemetry_lag(deps: Deps, stop: asyncio.Event) -> None:
    log = get_logger(component="shedding")
    threshold_s = deps.settings.telemetry_shed_lag_s
    interval_s = deps.settings.telemetry_shed_check_s
    while not stop.is_set():
        try:
            lag_s = await dispatch_lag_s(deps)
        except RedisError:
            lag_s = 0.0  # Redis away: pings fail on their own; shedding cannot help
        was_shedding = deps.admission.shedding
        deps.admission.observe(lag_s, threshold_s, interval_s)
        if deps.admission.shedding != was_shedding:
            log.warning(
                "ingest.shedding" if deps.admission.shedding else "ingest.shedding_stopped",
                lag_s=round(lag_s, 2),
            )
        TELEMETRY_ADMITTED.set(deps.admission.share)
        deps.shed_retry_after_s = retry_after_s(lag_s, threshold_s)
        await sleep_or_stop(stop, interval_s)
