"""`ridepulse run eta`: wiring of eta's handlers around the shared bus.

Two consumer groups in one process: `eta` on the ride stream (phases of active rides) and
`eta.speeds` on telemetry (batch handler: learn speeds, refresh ETAs), plus the task that
persists the speeds. State is in memory and rebuilt at start (active rides from the ride
projections, speeds from the read model). Each group runs one runtime per market. Without
leases run one replica: a second would see only part of the telemetry and overwrite the speeds
the first one learned. With ``RIDEPULSE_LEASES=1`` N replicas split the markets by lease: a
market's runtimes read (and claim) only while this replica holds it, so its streams have one
reader at a time, and its writes are fenced (eta.takeover, docs/scaling.md)."""

from __future__ import annotations

from functools import partial

from eta.active import load_active
from eta.deps import SERVICE, EtaDeps
from eta.handlers import HANDLERS, TELEMETRY_HANDLERS
from eta.speeds import restore_speeds, run_persister
from eta.takeover import run_leases
from ridepulse.bus.conflation import Conflation
from ridepulse.bus.consumer import ConsumerRuntime, StreamSource
from ridepulse.bus.handlers import HandlerTable
from ridepulse.bus.worker import consumer_name, run_consumer_service, start_service
from ridepulse.keys import MarketKeys
from ridepulse.leases import LeaseKeeper
from ridepulse.logs import get_logger
from ridepulse.markets import load_markets
from ridepulse.redis_client import connect
from ridepulse.rides.store import RideStore
from ridepulse.settings import Settings
from ridepulse.telemetry_groups import ETA_SPEEDS


def build(
    settings: Settings, *, burst: bool = False
) -> tuple[EtaDeps, list[ConsumerRuntime[EtaDeps]]]:
    redis = connect(settings)
    markets = load_markets(settings.markets_file, settings.markets).markets
    consumer = consumer_name(settings, SERVICE)
    keys = {m.id: MarketKeys(m.id, settings.key_prefix) for m in markets}
    leases = None
    if settings.leases:
        leases = LeaseKeeper(
            redis, settings.key_prefix, SERVICE, consumer, list(keys), ttl_ms=settings.lease_ttl_ms
        )
    deps = EtaDeps(
        redis=redis,
        settings=settings,
        source=f"{SERVICE}/{consumer}",
        stores={m: RideStore(redis, k, f"{SERVICE}/{consumer}") for m, k in keys.items()},
        models={},
        leases=leases,
    )
    for market in keys:
        deps.fresh_model(market)

    def runtime(
        group: str,
        market: str,
        sources: list[StreamSource],
        handlers: HandlerTable[EtaDeps],
        read_count: int | None = None,
        conflation: Conflation | None = None,
        linger_ms: int = 0,
    ) -> ConsumerRuntime[EtaDeps]:
        return ConsumerRuntime(
            redis,
            settings=settings,
            service=SERVICE,
            group=group,
            consumer=consumer,
            sources=sources,
            handlers=handlers,
            deps=deps,
            burst=burst,
            read_count=read_count,
            conflation=conflation,
            linger_ms=linger_ms,
            gate=None if leases is None else partial(deps.owns, market),
        )

    # One runtime per market and group: the gate opens and closes a market's reading with its
    # lease, and a batch handler's output goes to the market of the batch's first entry, so a
    # telemetry batch must never mix markets.
    rides = [
        runtime("eta", m, [StreamSource(k.rides, m)], HANDLERS, linger_ms=settings.read_linger_ms)
        for m, k in keys.items()
    ]
    speeds = [
        runtime(
            ETA_SPEEDS,
            m,
            [StreamSource(k.telemetry, m)],
            TELEMETRY_HANDLERS,
            settings.telemetry_read_count,
            Conflation(settings.eta_conflation_window_ms) if settings.telemetry_conflate else None,
        )
        for m, k in keys.items()
    ]
    return deps, [*rides, *speeds]


async def warm_up(deps: EtaDeps) -> None:
    """Resume where the last run stopped: learned speeds, and every ride now in a phase.
    Leased: nothing here — each market is rebuilt when its lease is taken (eta.takeover)."""
    if deps.leases is not None:
        return
    await restore_speeds(deps)
    for market in deps.stores:
        for active in await load_active(deps.redis, deps.keys(market)):
            deps.rides.track(active)


async def serve(settings: Settings) -> None:
    deps, runtimes = build(settings)

    background = [partial(run_persister, deps)]
    if deps.leases is not None:
        # only with leases: a background task that returns ends the service (bus/worker.py)
        background.append(partial(run_leases, deps))

    async def warm() -> None:
        await warm_up(deps)
        get_logger().info("eta.warmed_up", active_rides=len(deps.rides))

    await run_consumer_service(
        deps.redis,
        settings,
        service=SERVICE,
        runtimes=runtimes,
        background=background,
        warm_up=warm,
    )


def main(settings: Settings) -> None:
    start_service(SERVICE, settings, serve)
