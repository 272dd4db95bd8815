"""The pure parts of market leases: the fair share and the plan of what to give back or try."""

from __future__ import annotations

from ridepulse.leases import fair_share, fence_key, lease_key, plan


def test_fair_share_covers_every_market() -> None:
    assert fair_share(2, 1) == 2
    assert fair_share(2, 2) == 1
    assert fair_share(3, 2) == 2
    assert fair_share(2, 5) == 1
    assert fair_share(0, 3) == 0
    assert fair_share(4, 0) == 4  # nobody counted yet (first beat not in): take what is free


def test_plan_releases_the_surplus_beyond_the_share() -> None:
    release, attempt = plan(["sf", "nyc", "la"], ["sf", "nyc", "la"], 2, "a")
    assert release == ["la"] and attempt == []


def test_plan_tries_only_markets_it_does_not_hold_when_under_its_share() -> None:
    release, attempt = plan(["sf", "nyc", "la"], ["nyc"], 2, "a")
    assert release == []
    assert sorted(attempt) == ["la", "sf"]


def test_plan_at_its_share_does_nothing() -> None:
    assert plan(["sf", "nyc"], ["sf"], 1, "a") == ([], [])


def test_replicas_start_their_attempts_at_different_markets() -> None:
    markets = [f"m{i}" for i in range(8)]
    firsts = {plan(markets, [], 4, f"eta@host-{pid}")[1][0] for pid in range(20)}
    assert len(firsts) > 1


def test_lease_and_fence_keys_share_the_market_slot() -> None:
    assert lease_key("rp", "eta", "nyc") == "rp:{nyc}:lease:eta"
    assert fence_key("rp", "eta", "nyc") == "rp:{nyc}:lease:eta:fence"
