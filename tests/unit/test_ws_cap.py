"""The per-token WebSocket cap (ridepulse/ws_cap.py): counts open sockets per token, frees a
slot on release, and never holds a token itself."""

from __future__ import annotations

from ridepulse.auth import mint_dashboard_link
from ridepulse.ws_cap import ConnectionCap, token_identity

SECRET = "unit-ws-cap-secret-0123456789abcdef"


def test_a_token_gets_limit_slots_and_another_token_its_own() -> None:
    cap = ConnectionCap(2)
    assert [cap.acquire("a"), cap.acquire("a"), cap.acquire("a")] == [True, True, False]
    assert cap.acquire("b"), "one token's cap must not refuse another token"
    cap.release("a")
    assert cap.acquire("a"), "a released slot is free again"
    assert not cap.acquire("a"), "and only that one"


def test_a_refused_acquire_takes_no_slot() -> None:
    cap = ConnectionCap(1)
    assert cap.acquire("a")
    assert not any(cap.acquire("a") for _ in range(5))
    cap.release("a")  # the one granted slot: the five refusals must not count
    assert len(cap) == 0
    assert cap.acquire("a")


def test_zero_means_no_cap() -> None:
    unlimited = ConnectionCap(0)
    assert all(unlimited.acquire("a") for _ in range(5000))


def test_a_token_leaves_the_table_with_its_last_socket_and_is_never_stored() -> None:
    token = mint_dashboard_link(SECRET, "viewer-1")
    cap = ConnectionCap(3)
    assert cap.acquire(token) and cap.acquire(token) and len(cap) == 1
    assert token not in repr(vars(cap)), "the table must hold the token's identity, not it"
    assert token_identity(token) in vars(cap)["_open"]
    cap.release(token)
    cap.release(token)
    assert len(cap) == 0, "a token with no open socket must not stay in memory"
    cap.release(token)  # an extra release never makes a count negative
    assert [cap.acquire(token) for _ in range(4)] == [True, True, True, False]


def test_identity_is_equal_for_equal_tokens_only() -> None:
    first, second = mint_dashboard_link(SECRET, "one"), mint_dashboard_link(SECRET, "two")
    assert token_identity(first) == token_identity(first)
    assert token_identity(first) != token_identity(second)
    assert first not in token_identity(first)
