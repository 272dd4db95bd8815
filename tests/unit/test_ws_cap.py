"""The per-grant WebSocket cap (ridepulse/ws_cap.py): counts open sockets per grant (a verified
token's `Principal.grant`), frees a slot on release, and never holds a token itself."""

from __future__ import annotations

from ridepulse.auth import mint_dashboard_link, mint_token, verify_token
from ridepulse.ws_cap import ConnectionCap

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


def test_a_grant_leaves_the_table_with_its_last_socket_and_no_token_is_stored() -> None:
    token = mint_dashboard_link(SECRET, "viewer-1")
    grant = verify_token(SECRET, token, audience="dashboard").grant
    cap = ConnectionCap(3)
    assert cap.acquire(grant) and cap.acquire(grant) and len(cap) == 1
    assert token not in repr(vars(cap)), "the table must hold the token's grant, not it"
    cap.release(grant)
    cap.release(grant)
    assert len(cap) == 0, "a grant with no open socket must not stay in memory"
    cap.release(grant)  # an extra release never makes a count negative
    assert [cap.acquire(grant) for _ in range(4)] == [True, True, True, False]


def test_a_grant_is_the_same_for_every_spelling_of_a_token_and_differs_between_tokens() -> None:
    """PyJWT's base64 decoding accepts a signature with a `=` added, so the text of a token
    is not its identity; its verified claims are."""
    link, driver = mint_dashboard_link(SECRET, "one"), mint_token(SECRET, "driver", "d-1")
    for token, audience in ((link, "dashboard"), (driver, "api")):
        grant = verify_token(SECRET, token, audience=audience).grant
        assert verify_token(SECRET, token + "=", audience=audience).grant == grant
        assert token not in grant and token.split(".")[2] not in grant
    first, second = mint_dashboard_link(SECRET, "one"), mint_dashboard_link(SECRET, "one")
    assert first != second, "each link has an id (jti) of its own"
    assert _grant(first) != _grant(second), "two links of one subject: two grants"


def _grant(link: str) -> str:
    return verify_token(SECRET, link, audience="dashboard").grant
