"""`ridepulse run pricing`: surge per H3 cell from demand (ride requests) and supply
(available drivers), as complex event processing over a sliding window (pricing.surge).

One consumer group, `pricing` on the ride stream (demand), and the publisher task, which
reads supply from matching's geo index on each tick (pricing/supply.py). Fares and quotes
are not served here: ingest answers GET /v1/quote from the read models pricing (keys.surge)
and eta (keys.speeds) publish, with the shared ridepulse.fares, so a quote costs no extra hop
and works while pricing restarts. The window is in memory and rebuilt at start
(pricing.replay). Without leases run one replica per market — replicas of one group would each
see only part of the demand; with ``RIDEPULSE_LEASES=1`` N replicas split the markets by lease
and each owner reads its markets' whole demand (pricing.publisher, docs/scaling.md)."""

from __future__ import annotations

from functools import partial

from pricing.deps import PricingDeps
from pricing.handlers import HANDLERS
from pricing.publisher import restore_published, run_leases, run_publisher
from pricing.replay import replay_demand
from pricing.supply import sample_supply
from ridepulse.bus.consumer import ConsumerRuntime, StreamSource
from ridepulse.bus.worker import consumer_name, run_consumer_service, start_service
from ridepulse.contracts.envelope import now_ms
from ridepulse.keys import MarketKeys
from ridepulse.logs import get_logger
from ridepulse.markets import load_markets
from ridepulse.redis_client import connect
from ridepulse.settings import Settings

SERVICE = "pricing"


def build(
    settings: Settings, *, burst: bool = False
) -> tuple[PricingDeps, list[ConsumerRuntime[PricingDeps]]]:
    redis = connect(settings)
    markets = [m.id for m in load_markets(settings.markets_file, settings.markets).markets]
    consumer = consumer_name(settings, SERVICE)
    deps = PricingDeps.create(redis, settings, markets, f"{SERVICE}/{consumer}", owner=consumer)
    keys = {m: MarketKeys(m, settings.key_prefix) for m in markets}

    rides = ConsumerRuntime(
        redis,
        settings=settings,
        service=SERVICE,
        group="pricing",
        consumer=consumer,
        sources=[StreamSource(k.rides, m) for m, k in keys.items()],
        handlers=HANDLERS,
        deps=deps,
        burst=burst,
        linger_ms=settings.read_linger_ms,
    )
    return deps, [rides]


async def warm_up(deps: PricingDeps) -> None:
    """What was published, demand of the last window and drivers available now. Leased: nothing
    here — each market is rebuilt when its lease is taken (pricing.publisher.take_over)."""
    if deps.leases is not None:
        return
    await restore_published(deps)
    now = now_ms()
    for market in deps.markets:
        demand = await replay_demand(deps, market, now)
        supply = await sample_supply(deps, market, now)
        get_logger().info("pricing.warmed_up", market=market, requests=demand, drivers=supply)


async def serve(settings: Settings) -> None:
    deps, runtimes = build(settings)
    background = [partial(run_publisher, deps)]
    if deps.leases is not None:
        # only with leases: a background task that returns ends the service (bus/worker.py)
        background.append(partial(run_leases, deps))
    await run_consumer_service(
        deps.redis,
        settings,
        service=SERVICE,
        runtimes=runtimes,
        background=background,
        warm_up=partial(warm_up, deps),
    )


def main(settings: Settings) -> None:
    start_service(SERVICE, settings, serve)
