"""The dashboard's per-market feeds (dashboard/feed.py, wired in dashboard/app.py): one state and
one hub per served market, the first market by default; a change in one market reaches only that
market's clients; an unknown market is a 404 naming the field."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import redis.asyncio as aioredis

from dashboard.feed import Feed, pick_feed, served_markets
from dashboard.protocol import decode
from ridepulse.contracts.envelope import now_ms
from ridepulse.errors import NotFound
from ridepulse.settings import Settings


def _feeds(markets: str | None) -> SimpleNamespace:
    """What create_app keeps in app.state; nothing is read: the client is never connected."""
    settings = Settings(markets=markets)
    client = aioredis.Redis(host="127.0.0.1", port=1)
    served = served_markets(settings)
    feeds = {m.id: Feed(client, settings, market=m, served=served) for m in served}
    return SimpleNamespace(feeds=feeds, feed=feeds[served[0].id])


def test_one_feed_per_served_market_and_the_first_is_the_default() -> None:
    app_state = _feeds("nyc,sf")
    assert list(app_state.feeds) == ["nyc", "sf"]
    assert pick_feed(app_state, None) is app_state.feeds["nyc"]
    sf = pick_feed(app_state, "sf")
    assert sf.market.id == "sf" and sf.keys.market == "sf"
    assert [m["id"] for m in sf.state.market["markets"]] == ["nyc", "sf"]
    centres = [app_state.feeds[m].state.market["center"]["lat"] for m in ("nyc", "sf")]
    assert centres[0] == pytest.approx(40.7, abs=0.3) and centres[1] == pytest.approx(37.7, abs=0.3)


def test_a_deployment_of_one_market_has_one_feed() -> None:
    assert list(_feeds(None).feeds) == ["sf"]


def test_an_unknown_market_is_not_found_on_the_market_field() -> None:
    with pytest.raises(NotFound) as raised:
        pick_feed(_feeds("sf,nyc"), "paris")
    assert raised.value.field == "market" and raised.value.status == 404


async def test_a_change_in_one_market_reaches_only_that_markets_clients() -> None:
    app_state = _feeds("sf,nyc")
    sf, nyc = pick_feed(app_state, "sf"), pick_feed(app_state, "nyc")
    assert sf.state is not nyc.state and sf.hub is not nyc.hub
    sf_client, nyc_client = sf.hub.connect(), nyc.hub.connect()
    now = now_ms()
    for feed in (sf, nyc):
        feed.state.refresh(now)
        feed.hub.tick()  # the snapshots
    assert decode(sf_client.queue.get_nowait()[0])["market"]["id"] == "sf"
    assert decode(nyc_client.queue.get_nowait()[0])["market"]["id"] == "nyc"
    nyc.state.add_series_point({"t": now, "telemetry_per_s": 5.0, "ride_events_per_s": 1.0})
    for feed in (sf, nyc):  # what Feed._tick does for each market
        feed.state.maybe_refresh(now)
        feed.hub.tick()
    assert sf_client.queue.empty(), "an sf client was sent a delta of nyc"
    delta = decode(nyc_client.queue.get_nowait()[0])
    assert delta["kind"] == "delta" and delta["series_point"]["telemetry_per_s"] == 5.0
