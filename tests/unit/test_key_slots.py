"""The market is the hash tag: every key MarketKeys builds is in the market's slot, and the
keys that belong to no market are only the bookkeeping no request waits on (docs/scaling.md).
tests/integration/test_market_request_keys.py checks the keys a live request really sends."""

from __future__ import annotations

import inspect

from redis.crc import key_slot

from ridepulse.keys import GlobalKeys, MarketKeys

# Global on purpose: services' health and failed deliveries, written and read off the request path.
GLOBAL_KEYS = {"dead_letters", "health", "heartbeat", "heartbeats"}


def _built(keys: object) -> dict[str, str]:
    """Each public key builder of `keys`, called with sample arguments."""
    built: dict[str, str] = {}
    for name, member in inspect.getmembers(type(keys)):
        if name.startswith("_") or name in ("market", "prefix"):
            continue
        if isinstance(member, property):
            built[name] = getattr(keys, name)
        elif callable(member):
            arity = len(inspect.signature(member).parameters) - 1
            built[name] = getattr(keys, name)(*[f"a{i}" for i in range(arity)])
    return built


def test_every_market_key_hashes_to_its_markets_slot() -> None:
    for market in ("sf", "nyc", "lon"):
        slot = key_slot(f"{{{market}}}".encode())
        built = _built(MarketKeys(market, "rp"))
        off = {name: key for name, key in built.items() if key_slot(key.encode()) != slot}
        assert "rider_rate" in built and "driver_home" in built, sorted(built)
        assert off == {}, f"{market}: keys outside the market's slot: {off}"


def test_the_only_global_keys_are_ones_no_request_waits_on() -> None:
    built = _built(GlobalKeys("rp"))
    assert set(built) == GLOBAL_KEYS, (
        f"a new global key {sorted(set(built) - GLOBAL_KEYS)}: a market's request must not "
        "wait on it (give it the market's tag, or say in docs/scaling.md why it is global)"
    )
