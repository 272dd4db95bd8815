"""Process-wide simulation state the locust users share: config, market, streets, demand, ledger.

Built once, on first use (not at import), from the environment. Plain Python: no locust import, so
the SLO gate and the users share one ledger of open rides without a global in the locustfile.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache

from loadtests.behaviours.config import SimConfig
from loadtests.behaviours.demand import DemandModel, RiderHabits
from loadtests.behaviours.driving import DriverTraits
from loadtests.behaviours.ledger import RideLedger
from loadtests.behaviours.streets import StreetGrid
from ridepulse.markets import Market, load_markets


@dataclass
class Runtime:
    config: SimConfig
    secret: str
    market: Market
    grid: StreetGrid
    demand: DemandModel
    traits: DriverTraits
    ledger: RideLedger = field(default_factory=RideLedger)
    # Per-process run id in every simulated id: a restarted simulation never inherits the rides,
    # offers or idempotency keys of the previous one, and workers of a distributed run never
    # collide.
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    _counters: dict[str, Iterator[int]] = field(default_factory=dict)

    def next_index(self, kind: str) -> int:
        return next(self._counters.setdefault(kind, itertools.count()))

    def rng(self, kind: str, index: int) -> random.Random:
        """Seeded per simulated actor: one actor's draws don't depend on how many others exist."""
        if self.config.seed is None:
            return random.Random()
        return random.Random(f"{self.config.seed}/{kind}/{index}")


def build_runtime(config: SimConfig) -> Runtime:
    # every market of the file: RIDEPULSE_SIM_MARKET picks one, unset = the first
    markets = load_markets(config.markets_file, "all")
    if config.market and config.market not in markets.by_id:
        known = ", ".join(markets.by_id)
        raise ValueError(
            f"RIDEPULSE_SIM_MARKET={config.market!r} is not a configured market ({known})"
        )
    market = markets.get(config.market) if config.market else markets.default
    return Runtime(
        config=config,
        secret=config.resolve_secret(),
        market=market,
        grid=StreetGrid(market.bbox, market.center),
        demand=DemandModel(
            market,
            habits=RiderHabits(
                quote_probability=config.quote_probability,
                cancel_probability=config.cancel_probability,
                mean_think_s=config.rider_think_s,
            ),
        ),
        traits=DriverTraits(
            accept_probability=config.accept_probability,
            mean_online_s=config.mean_online_s,
            mean_offline_s=config.mean_offline_s,
            start_hour=config.start_hour,
        ),
    )


@cache
def sim_config() -> SimConfig:
    """This process's knobs; all a locust master needs (it runs no users, so needs no secret)."""
    return SimConfig.from_env()


@cache
def runtime() -> Runtime:
    """The one Runtime of this locust process."""
    return build_runtime(sim_config())
