"""`ridepulse up --markets sf,nyc` runs one simulated city per market (docs/scaling.md): each
market's simulated drivers go online in their own market and its riders are offered rides
there. A simulated driver pings, then goes available at once: the status lands in the market
of the ping (ingest.driver_homes), never in the default market."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ridepulse.keys import MarketKeys
from tests.support.processes import Platform
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.e2e

MARKETS = ("sf", "nyc")
BUSY_CITY = {  # riders ask at once, at midday: offers come within seconds of the fleet
    "RIDEPULSE_SIM_RIDER_THINK_S": "5",
    "RIDEPULSE_SIM_START_HOUR": "12",
}
DRIVERS_ONLINE = 10


def _runs_of_drivers(client: Any, market: str) -> dict[str, int]:
    """Simulation run id (`d-<run>-<n>`) → drivers of that run the market knows a status of."""
    runs: dict[str, int] = {}
    for driver in client.hkeys(MarketKeys(market).driver_statuses):
        run = driver.decode().split("-")[1]
        runs[run] = runs.get(run, 0) + 1
    return runs


def _offered(client: Any, market: str) -> int:
    return int(client.hget(MarketKeys(market).ride_counts, "offered") or 0)


def test_each_market_runs_its_own_simulated_city(tmp_path: Path) -> None:
    platform = Platform(tmp_path / "city", "--markets", ",".join(MARKETS), env=BUSY_CITY)
    try:
        platform.wait_up()
        client: Any = platform.redis_client()
        latest: dict[str, Any] = {}
        try:

            def both_busy() -> dict[str, Any] | None:
                latest.update(
                    {m: (_runs_of_drivers(client, m), _offered(client, m)) for m in MARKETS}
                )
                busy = all(
                    sum(runs.values()) >= DRIVERS_ONLINE and offered > 0
                    for runs, offered in latest.values()
                )
                return dict(latest) if busy else None

            try:
                seen = wait_until_sync(
                    both_busy,
                    timeout_s=150,
                    what="drivers online and rides offered in both markets",
                )
            except AssertionError as exc:
                shown = f"per market, (drivers by simulation run, rides offered): {latest}"
                raise AssertionError(f"{exc}; {shown}") from None
            sf_runs, nyc_runs = set(seen["sf"][0]), set(seen["nyc"][0])
            # one simulation per market, and no driver of one city has a status in the other
            assert len(sf_runs) == len(nyc_runs) == 1, seen
            assert sf_runs != nyc_runs, seen
        finally:
            client.close()
    finally:
        code = platform.stop(timeout_s=60)
    assert code == 0, f"ridepulse up exited {code}:\n{platform.text()[-2000:]}"
