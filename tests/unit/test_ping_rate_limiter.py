"""The per-driver ping bucket: the limit itself, and a table that holds the recently active
drivers only, so ingest's memory levels off while driver ids come and go (docs/reliability.md)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from ingest.deps import TOKEN_CACHE_TTL_S, Deps
from ingest.ratelimit import SWEEP_EVERY_S, PingRateLimiter
from ridepulse.auth import mint_token
from ridepulse.settings import Settings


def test_a_driver_gets_its_burst_then_the_rate() -> None:
    limiter = PingRateLimiter(rate_per_s=1.0, burst=3.0)
    assert [limiter.allow("d", now=100.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("d", now=101.0)  # one token back after a second
    assert not limiter.allow("d", now=101.1)


def test_a_burst_sent_at_one_instant_is_let_in_whole_alone_or_in_a_batch() -> None:
    """19 pings' refill times (0.2 s each) summed in floats must not come out over 3.8 s."""
    at = 12_345.678  # a monotonic clock's kind of value, where the rounding shows
    alone = PingRateLimiter(rate_per_s=5.0, burst=20.0)
    assert [alone.allow("d", now=at) for _ in range(21)] == [True] * 20 + [False]
    batch = PingRateLimiter(rate_per_s=5.0, burst=20.0)
    assert batch.allow_all(["d"] * 20, now=at)
    assert not batch.allow("d", now=at)


def test_a_batch_takes_a_token_per_ping_or_none_at_all() -> None:
    limiter = PingRateLimiter(rate_per_s=1.0, burst=3.0)
    assert limiter.allow_all(["a", "b", "a"], now=100.0)  # a: 1 token left, b: 2
    assert not limiter.allow_all(["b", "a", "a"], now=100.0)  # a has 1 for 2 pings
    assert not limiter.allow_all(["c", "a", "a"], now=100.0)
    assert limiter.allow_all(["a", "b", "c"], now=100.0)  # each driver once; nothing was taken
    assert not limiter.allow_all(["a", "d"], now=100.0)  # a is empty
    assert [limiter.allow("b", now=100.0) for _ in range(2)] == [True, False]
    assert limiter.allow_all(["a", "b", "d"], now=101.0)  # a token back after a second
    assert not limiter.allow_all(["a"], now=101.0)


def test_refilled_buckets_are_dropped_and_active_ones_kept() -> None:
    limiter = PingRateLimiter(rate_per_s=1.0, burst=5.0)
    t = 1000.0
    for i in range(10_000):  # churn: every id pings once and leaves
        assert limiter.allow(f"gone-{i}", now=t)
    for _ in range(5):
        limiter.allow("busy", now=t)  # empties its bucket
    assert len(limiter) == 10_001
    later = t + SWEEP_EVERY_S + 1  # long enough for every bucket but a drained one to refill
    assert limiter.allow("new", now=later)
    # the departed drivers' full buckets are gone; the new one is in
    assert len(limiter) <= 2
    # forgetting a full bucket grants nothing extra: a departed driver's burst is the same
    assert [limiter.allow("gone-1", now=later) for _ in range(6)] == [True] * 5 + [False]


def test_a_drained_bucket_survives_the_sweep() -> None:
    limiter = PingRateLimiter(rate_per_s=0.01, burst=2.0)  # refills in 200 s
    assert limiter.allow("slow", now=0.0) and limiter.allow("slow", now=0.0)
    assert not limiter.allow("slow", now=SWEEP_EVERY_S + 1)  # swept now, still empty: refused
    assert len(limiter) == 1


def _deps() -> Deps:
    return Deps(  # only what authenticate() reads
        settings=Settings(),
        redis=None,  # type: ignore[arg-type]
        markets=None,  # type: ignore[arg-type]
        secret="s" * 32,
        batcher=None,  # type: ignore[arg-type]
        limiter=PingRateLimiter(1.0, 1.0),
        stores={},
        source="test",
    )


def test_the_token_cache_keeps_live_tokens_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verified tokens are cached until they expire; expired ones are swept out, so a stream of
    new drivers' tokens does not pile up until the size cap."""
    deps = _deps()
    now = time.time()
    for i in range(100):
        deps.authenticate(f"Bearer {mint_token(deps.secret, 'driver', f'd-{i}', ttl_s=60)}")
    assert len(deps._tokens) == 100
    later = SimpleNamespace(time=lambda: now + 120)  # ingest's clock only: they have expired
    monkeypatch.setattr("ingest.deps.time", later)
    fresh = mint_token(deps.secret, "driver", "d-new", ttl_s=3600)
    assert deps.authenticate(f"Bearer {fresh}").subject == "d-new"
    assert list(deps._tokens) == [fresh]


def test_the_token_cache_forgets_long_lived_tokens_of_departed_callers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 12-hour token of a driver who has gone leaves the cache once TOKEN_CACHE_TTL_S has
    passed (the soak churns thousands of such ids); a caller still active is verified again."""
    deps = _deps()
    now = time.time()
    departed = [mint_token(deps.secret, "driver", f"d-{i}", ttl_s=12 * 3600) for i in range(100)]
    for token in departed:
        deps.authenticate(f"Bearer {token}")
    assert len(deps._tokens) == 100
    later = SimpleNamespace(time=lambda: now + TOKEN_CACHE_TTL_S + 1)
    monkeypatch.setattr("ingest.deps.time", later)
    active = mint_token(deps.secret, "driver", "d-active", ttl_s=12 * 3600)
    assert deps.authenticate(f"Bearer {active}").subject == "d-active"
    assert list(deps._tokens) == [active]
    # a departed driver who comes back is verified again, not refused
    assert deps.authenticate(f"Bearer {departed[0]}").subject == "d-0"
