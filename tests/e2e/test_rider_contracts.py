"""The rider's request path keeps its promises, from outside (HTTP and WebSocket with real
tokens against `ridepulse up`): a 202 means fsynced, a quote serves one ride along its own
trip, an Idempotency-Key replays or refuses, limits answer 429 with Retry-After, and someone
else's ride is a 404 (issues 9.2 and 11.2, 11.3, 11.4, 11.7)."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Any

import httpx
import pytest
import redis
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from ridepulse.auth import mint_token
from ridepulse.keys import MarketKeys
from tests.support.api import DOWNTOWN, City, offset

pytestmark = pytest.mark.e2e
DROPOFF = offset(DOWNTOWN, -2000, 500)
SF = MarketKeys("sf")


def _ride_body(pickup: tuple[float, float], dropoff: tuple[float, float], **extra: Any) -> Any:
    return {
        "pickup": {"lat": pickup[0], "lon": pickup[1]},
        "dropoff": {"lat": dropoff[0], "lon": dropoff[1]},
        **extra,
    }


def _post_ride(city: City, rider: str, body: Any, key: str | None = None) -> httpx.Response:
    headers = city.token("rider", rider)
    if key is not None:
        headers["Idempotency-Key"] = key
    return city.http.post("/v1/rides", json=body, headers=headers, timeout=30)


def _config_set(client: redis.Redis, name: str, value: str) -> None:
    if isinstance(client, redis.RedisCluster):
        client.config_set(name, value, target_nodes=redis.RedisCluster.ALL_NODES)
    else:
        client.config_set(name, value)


def _cancel(city: City, rider: str, ride_id: str) -> httpx.Response:
    return city.http.post(f"/v1/rides/{ride_id}/cancel", headers=city.token("rider", rider))


# --- 9.2: durable before the 202 ------------------------------------------------------------


def test_a_202_waits_for_the_fsync_of_its_own_write_and_is_a_503_with_retry_after_without(
    city: City,
) -> None:
    db = city.platform.redis_client()
    try:
        # With appendfsync no the server never fsyncs: WAITAOF on the ride's own connection
        # cannot be satisfied, so no 202 may go out. (The old code sent WAITAOF on another
        # pooled connection and ignored its reply: it answered 202 at once.)
        _config_set(db, "appendfsync", "no")
        body = _ride_body(DOWNTOWN, DROPOFF)
        started = time.monotonic()
        refused = _post_ride(city, "durable-rider", body, key="trip-1")
        waited_s = time.monotonic() - started
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "not_durable"
        assert int(refused.headers["Retry-After"]) >= 1
        assert waited_s >= 1.5, f"the 503 came after {waited_s:.2f}s: WAITAOF did not wait"

        # fsync back on: the retry with the same key gets the ride the first attempt wrote
        _config_set(db, "appendfsync", "everysec")
        accepted = _post_ride(city, "durable-rider", body, key="trip-1")
        assert accepted.status_code == 202, accepted.text
        assert db.smembers(SF.rider_rides("durable-rider")) == {
            accepted.json()["ride_id"].encode()
        }, "the retry replayed the first attempt's ride: one ride per key"

        # a server that refuses WAITAOF (appendonly off) gets no silent downgrade either
        _config_set(db, "appendonly", "no")
        refused = _post_ride(city, "durable-rider-2", body, key="trip-2")
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["Retry-After"]) >= 1
    finally:
        _config_set(db, "appendonly", "yes")
        db.close()


def test_the_ride_script_and_its_waitaof_run_on_one_connection(shared_city: City) -> None:
    """WAITAOF covers the writes of the connection it is sent on: under concurrent requests,
    MONITOR shows each ride script followed, on its own client connection, by WAITAOF; on a
    cluster, on the primary of the market's slot (MONITOR is per node), where ingest pins it.
    A structural guard: the old code often passed it too (a LIFO pool tends to hand the
    script's connection back for the WAITAOF); the 503 test above is the one it failed."""
    client = shared_city.platform.redis_client()
    db = _market_server(client)
    riders = [f"monitored-{i}" for i in range(12)]
    seen: list[dict[str, Any]] = []
    listening, done = threading.Event(), threading.Event()

    def watch() -> None:
        with db.monitor() as monitor:  # type: ignore[no-untyped-call]
            listening.set()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not done.is_set():
                seen.append(monitor.next_command())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert listening.wait(10)
    with concurrent.futures.ThreadPoolExecutor(len(riders)) as pool:
        body = _ride_body(DOWNTOWN, DROPOFF)
        responses = list(pool.map(lambda r: _post_ride(shared_city, r, body), riders))
    assert [r.status_code for r in responses] == [202] * len(riders)
    db.ping()  # one more command to wake the watcher
    done.set()
    watcher.join(30)
    for rider in riders:
        at = max(  # the last attempt: an EVALSHA refused with NOSCRIPT is followed by EVAL
            i
            for i, c in enumerate(seen)
            if c["command"].startswith("EVAL") and f" {rider} " in f" {c['command']} "
        )
        where = (seen[at]["client_address"], seen[at]["client_port"])
        following = next(
            c for c in seen[at + 1 :] if (c["client_address"], c["client_port"]) == where
        )
        assert following["command"].startswith("WAITAOF 1 0"), (rider, following)
    for rider, response in zip(riders, responses, strict=True):
        assert _cancel(shared_city, rider, response.json()["ride_id"]).status_code == 200
    client.close()


def _market_server(client: redis.Redis) -> redis.Redis:
    """The server that holds market sf's keys: the one server, or its slot's primary."""
    if not isinstance(client, redis.RedisCluster):
        return client
    node = client.get_node_from_key(SF.rider_rides("any"))
    assert node.redis_connection is not None
    return node.redis_connection


# --- 11.2: a quote is bound to its trip and used once -----------------------------------------


def test_a_quote_serves_one_ride_of_its_rider_along_its_own_trip(shared_city: City) -> None:
    hop = offset(DOWNTOWN, 110, 0)
    quote = shared_city.quote("q-rider", DOWNTOWN, hop)
    quoted = {"quote_id": quote["quote_id"]}

    far = _post_ride(
        shared_city, "q-rider", _ride_body(DOWNTOWN, offset(DOWNTOWN, 3000, 0), **quoted)
    )
    assert (far.status_code, far.json().get("field")) == (422, "dropoff"), far.text
    moved = offset(DOWNTOWN, -1500, 0)
    elsewhere = _post_ride(shared_city, "q-rider", _ride_body(moved, hop, **quoted))
    assert (elsewhere.status_code, elsewhere.json().get("field")) == (422, "pickup"), elsewhere.text
    stolen = _post_ride(shared_city, "q-thief", _ride_body(DOWNTOWN, hop, **quoted))
    assert (stolen.status_code, stolen.json().get("field")) == (422, "quote_id"), stolen.text

    # GPS drift of a few metres still fits the quote's cells
    ok = _post_ride(shared_city, "q-rider", _ride_body(offset(DOWNTOWN, 5, 5), hop, **quoted))
    assert ok.status_code == 202, ok.text
    ride_id = ok.json()["ride_id"]
    ride = shared_city.ride(ride_id)
    assert (ride["fare"], ride["surge"]) == (quote["fare"], quote["surge"]), "the quote is charged"

    assert _cancel(shared_city, "q-rider", ride_id).status_code == 200
    again = _post_ride(shared_city, "q-rider", _ride_body(DOWNTOWN, hop, **quoted))
    assert (again.status_code, again.json().get("field")) == (422, "quote_id"), again.text
    assert "used" in again.json()["detail"]


# --- 11.3: Idempotency-Key ----------------------------------------------------------------------


def test_an_idempotency_key_replays_its_answer_and_refuses_another_body(
    shared_city: City,
) -> None:
    hop = offset(DOWNTOWN, 400, 0)
    quote = shared_city.quote("idem-a", DOWNTOWN, hop)
    body = _ride_body(DOWNTOWN, hop, quote_id=quote["quote_id"])
    first = _post_ride(shared_city, "idem-a", body, key="k-1")
    assert first.status_code == 202, first.text

    # the quote is used up now, yet the retry is answered from the key, not refused for it
    retry = _post_ride(shared_city, "idem-a", body, key="k-1")
    assert retry.status_code == 202, retry.text
    assert retry.json() == first.json()

    other = _post_ride(shared_city, "idem-a", _ride_body(DOWNTOWN, DROPOFF), key="k-1")
    assert (other.status_code, other.json().get("field")) == (422, "idempotency_key"), other.text

    # keys are the rider's: another rider's identical key is a different request
    stranger = _post_ride(shared_city, "idem-b", _ride_body(DOWNTOWN, DROPOFF), key="k-1")
    assert stranger.status_code == 202, stranger.text
    assert stranger.json()["ride_id"] != first.json()["ride_id"]
    for rider, ride_id in (("idem-a", first), ("idem-b", stranger)):
        assert _cancel(shared_city, rider, ride_id.json()["ride_id"]).status_code == 200


def _get_ride(city: City, rider: str, ride_id: str) -> httpx.Response:
    return city.http.get(f"/v1/rides/{ride_id}", headers=city.token("rider", rider))


@pytest.mark.parametrize("same_body", [True, False], ids=["same-body", "another-body"])
def test_riders_whose_id_and_key_join_to_the_same_text_keep_their_own_keys(
    shared_city: City, same_body: bool
) -> None:
    # rider `<r>:x` with key `k` and rider `<r>` with key `x:k`: both pairs read `<r>:x:k`
    rider = f"idem-join-{int(same_body)}"
    first_body = _ride_body(DOWNTOWN, DROPOFF)
    second_body = first_body if same_body else _ride_body(DOWNTOWN, offset(DOWNTOWN, 600, 0))
    first = _post_ride(shared_city, f"{rider}:x", first_body, key="k")
    assert first.status_code == 202, first.text
    second = _post_ride(shared_city, rider, second_body, key="x:k")
    assert second.status_code == 202, f"the second rider never used this key: {second.text}"
    assert second.json()["ride_id"] != first.json()["ride_id"], "answered with another's ride"
    for owner, response in ((f"{rider}:x", first), (rider, second)):
        ride_id = response.json()["ride_id"]
        mine = _get_ride(shared_city, owner, ride_id)
        assert mine.status_code == 200, f"{owner} cannot read its ride {ride_id}: {mine.text}"
        assert _cancel(shared_city, owner, ride_id).status_code == 200


# --- 11.4: limits ---------------------------------------------------------------------------------


def _fresh_minute_window(seconds_needed: float = 20) -> None:
    """The per-minute counters are fixed windows: start where this test's calls fit in one."""
    left = 60 - time.time() % 60
    if left < seconds_needed:
        time.sleep(left + 0.2)


def test_rider_limits_answer_429_with_retry_after(shared_city: City) -> None:
    _fresh_minute_window()
    first = _post_ride(shared_city, "busy", _ride_body(DOWNTOWN, DROPOFF))
    assert first.status_code == 202, first.text
    second = _post_ride(shared_city, "busy", _ride_body(DOWNTOWN, DROPOFF))
    assert second.status_code == 429, "one open ride at a time (RIDEPULSE_RIDER_OPEN_RIDES=1)"
    assert second.json()["error"] == "rate_limited" and int(second.headers["Retry-After"]) >= 1
    assert _cancel(shared_city, "busy", first.json()["ride_id"]).status_code == 200
    third = _post_ride(shared_city, "busy", _ride_body(DOWNTOWN, DROPOFF))
    assert third.status_code == 202, "a finished ride frees the rider's slot"

    # ride requests per minute (10 by default): every attempt counts, refused ones too. Three
    # so far; attempts 4 to 10 are refused for the open ride, the 11th for the minute's count.
    codes = [_post_ride(shared_city, "busy", _ride_body(DOWNTOWN, DROPOFF)) for _ in range(8)]
    tenth, eleventh = codes[6], codes[7]
    assert tenth.status_code == 429 and "per minute" not in tenth.json()["detail"], tenth.text
    assert "per minute" in eleventh.json()["detail"], eleventh.text
    assert eleventh.status_code == 429 and int(eleventh.headers["Retry-After"]) >= 1

    params = {
        "pickup_lat": DOWNTOWN[0],
        "pickup_lon": DOWNTOWN[1],
        "dropoff_lat": DROPOFF[0],
        "dropoff_lon": DROPOFF[1],
    }
    rider = shared_city.token("rider", "quoter")
    _fresh_minute_window()
    quotes = [shared_city.http.get("/v1/quote", params=params, headers=rider) for _ in range(31)]
    assert [q.status_code for q in quotes[:30]] == [200] * 30
    assert quotes[30].status_code == 429 and int(quotes[30].headers["Retry-After"]) >= 1

    # cancels per minute: counted before the ride is looked up, so unknown ids spend them too
    canceller = "canceller"
    _fresh_minute_window()
    limit = 10  # RIDEPULSE_RIDER_CANCELS_PER_MIN's default
    cancels = [_cancel(shared_city, canceller, f"sf-r-none-{n}") for n in range(limit + 1)]
    assert 429 not in [c.status_code for c in cancels[:limit]], [c.text for c in cancels]
    assert cancels[limit].status_code == 429 and int(cancels[limit].headers["Retry-After"]) >= 1
    assert "cancels" in cancels[limit].json()["detail"], cancels[limit].text


def test_driver_websockets_are_capped_per_token(shared_city: City) -> None:
    token = mint_token(shared_city.secret, "driver", "ws-capped")
    url = f"ws://127.0.0.1:{shared_city.platform.api_port}/v1/drivers/ws-capped/ws?token={token}"
    with connect(url, open_timeout=10), connect(url, open_timeout=10):
        with pytest.raises(InvalidStatus) as refused:
            connect(url, open_timeout=10)
        assert refused.value.response.status_code == 429
        assert int(refused.value.response.headers["Retry-After"]) >= 1
    # closing frees the slots (the server notices the close asynchronously)
    deadline = time.monotonic() + 10
    while True:
        try:
            with connect(url, open_timeout=10):
                break
        except InvalidStatus:
            assert time.monotonic() < deadline, "closed sockets never freed their slots"
            time.sleep(0.1)


# --- 11.7: someone else's ride is a 404 ---------------------------------------------------


def test_someone_elses_ride_answers_exactly_like_a_missing_one(shared_city: City) -> None:
    ride_id = _post_ride(shared_city, "owner-404", _ride_body(DOWNTOWN, DROPOFF)).json()["ride_id"]
    missing_id = ride_id[:-4] + "0000"
    for role, subject in (("rider", "stranger-404"), ("driver", "stranger-driver")):
        headers = shared_city.token(role, subject)
        theirs = shared_city.http.get(f"/v1/rides/{ride_id}", headers=headers)
        missing = shared_city.http.get(f"/v1/rides/{missing_id}", headers=headers)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["error"] == missing.json()["error"] == "not_found"
        assert theirs.json()["detail"].replace(ride_id, "X") == missing.json()["detail"].replace(
            missing_id, "X"
        )
    cancel = _cancel(shared_city, "stranger-404", ride_id)
    assert cancel.status_code == 404
    assert _cancel(shared_city, "owner-404", ride_id).status_code == 200
