"""Input no schema-driven fuzzer sends (found by hand against a live stack): bytes that are not
UTF-8, nesting deeper than the decoder's stack, a chunked body far past the limit, a client
gone mid-body, a trip with one end, the Idempotency-Key's bounds and spellings, driver ids
outside ASCII, coordinates that are no finite number, a body in a Content-Encoding. Each is a
4xx with the API's JSON error that says what is wrong, never a 500; ingest in process against
the real embedded server."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from ingest.deps import MAX_BODY_BYTES
from ridepulse.rides.store import MAX_IDEMPOTENCY_KEY
from ridepulse.settings import Settings
from tests.support.ingest import DOWNTOWN, SF_TRIP, Ingest, start, telemetry

pytestmark = pytest.mark.integration

NOT_UTF8 = {
    "a lone 0xff": b"\xff",
    "an overlong slash": b"\xc0\xaf",
    "a surrogate": b"\xed\xa0\x80",
}


@pytest.fixture
async def ingest(settings: Settings) -> AsyncIterator[Ingest]:
    async with start(settings) as running:
        yield running


@pytest.mark.parametrize("bad", NOT_UTF8.values(), ids=NOT_UTF8.keys())
async def test_a_batch_with_bytes_that_are_not_utf8_is_a_422(
    ingest: Ingest, redis: aioredis.Redis, bad: bytes
) -> None:
    body = b'{"pings":[{"driver_id":"' + bad + b'","lat":37.7793,"lon":-122.4193}]}'
    response = await ingest.http.post(
        "/v1/telemetry", content=body, headers=ingest.auth("fleet", "f1")
    )
    assert response.status_code == 422, response.text
    assert response.json() == {"error": "invalid_input", "detail": "body is not valid JSON"}
    assert await redis.exists(telemetry(ingest.settings)) == 0


@pytest.mark.parametrize(("depth", "status"), [(1, 202), (990, 202), (5_000, 422)])
async def test_deep_nesting_is_never_a_500(ingest: Ingest, depth: int, status: int) -> None:
    """An unknown field is ignored however deep it nests (990 made the fast decoder raise
    RecursionError: a 500), up to the JSON parser's own depth; past that, a 422."""
    body = b'{"pings":[],"x":' + b"[" * depth + b"]" * depth + b"}"
    response = await ingest.http.post(
        "/v1/telemetry", content=body, headers=ingest.auth("fleet", "f1")
    )
    assert response.status_code == status, response.text
    if status == 202:
        assert response.json() == {"accepted": 0, "rejected": 0, "errors": []}
    else:
        assert response.json()["error"] == "invalid_input"


async def test_a_chunked_body_is_refused_once_past_the_limit_not_read_whole(
    ingest: Ingest,
) -> None:
    """No Content-Length to refuse up front: reading stops at the limit (it used to read all
    of it first, 300 MB for any valid token)."""
    sent = 0
    chunk = b" " * 4096

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(2_000):  # 8 MB if read whole
            sent += 1
            yield chunk

    response = await ingest.http.post(
        "/v1/drivers/d1/location", content=body(), headers=ingest.auth("driver", "d1")
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "payload_too_large"
    assert sent <= MAX_BODY_BYTES // len(chunk) + 2, f"{sent} chunks read"


# (method, path, role, subject, body): every route that reads a body
BODY_ROUTES = {
    "ping": ("POST", "/v1/drivers/d1/location", "driver", "d1", DOWNTOWN),
    "batch": ("POST", "/v1/telemetry", "fleet", "f1", {"pings": [{"driver_id": "d1", **DOWNTOWN}]}),
    "status": ("PUT", "/v1/drivers/d1/status", "driver", "d1", {"status": "available"}),
    "ride": ("POST", "/v1/rides", "rider", "r1", SF_TRIP),
}
ENCODED: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "gzip, compressed": ("gzip", gzip.compress),  # was a 422, "body is not valid JSON"
    "br, not compressed": ("br", bytes),  # was taken as sent: a 202
    "two codings": ("identity, gzip", gzip.compress),
}


@pytest.mark.parametrize("route", BODY_ROUTES.values(), ids=BODY_ROUTES.keys())
@pytest.mark.parametrize(("coding", "encode"), ENCODED.values(), ids=ENCODED.keys())
async def test_a_body_in_a_content_encoding_is_a_415_naming_it(
    ingest: Ingest,
    redis: aioredis.Redis,
    route: tuple[str, str, str, str, Any],
    coding: str,
    encode: Callable[[bytes], bytes],
) -> None:
    method, path, role, subject, body = route
    headers = {**ingest.auth(role, subject), "Content-Encoding": coding}
    response = await ingest.http.request(
        method, path, content=encode(orjson.dumps(body)), headers=headers
    )
    assert response.status_code == 415, response.text
    assert response.json() == {
        "error": "unsupported_content_encoding",
        "detail": f"Content-Encoding {coding!r} is not supported: send the body uncompressed",
    }
    assert response.headers["accept-encoding"] == "identity"
    assert await redis.exists(telemetry(ingest.settings)) == 0


@pytest.mark.parametrize("coding", ["identity", "Identity ", ""])
async def test_a_body_labelled_identity_is_read_as_sent(
    ingest: Ingest, redis: aioredis.Redis, coding: str
) -> None:
    headers = {**ingest.auth("fleet", "f1"), "Content-Encoding": coding}
    pings = {"pings": [{"driver_id": "d1", **DOWNTOWN}]}
    response = await ingest.http.post("/v1/telemetry", content=orjson.dumps(pings), headers=headers)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1, "rejected": 0, "errors": []}


async def test_a_client_gone_mid_body_is_no_error_of_ours(ingest: Ingest) -> None:
    """The connection closes before the body ends (the server sends http.disconnect): a 4xx no
    one reads. It went to the catch-all as a 500, whose exception the framework re-raises to the
    server to log as a traceback."""
    app = ingest.http._transport.app  # type: ignore[attr-defined]  # the ASGI app under test
    arriving: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"lat": 37.7', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return arriving.pop(0) if arriving else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    token = ingest.auth("driver", "d1")["Authorization"].encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/drivers/d1/location",
        "raw_path": b"/v1/drivers/d1/location",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"authorization", token), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("ingest", 80),
    }
    await app(scope, receive, send)  # raised ClientDisconnect before
    [start] = [m for m in sent if m["type"] == "http.response.start"]
    assert start["status"] == 400
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert orjson.loads(body)["error"] == "client_disconnected"


async def test_quote_and_ride_refuse_the_same_one_place_trip(ingest: Ingest) -> None:
    """A quote used to price a trip whose ends are one place, that the ride request then
    refused."""
    near = {"lat": DOWNTOWN["lat"] + 0.0001, "lon": DOWNTOWN["lon"]}  # 11 m away
    quote = await ingest.quote("r1", DOWNTOWN, near)
    ride = await ingest.request_ride("r1", {"pickup": DOWNTOWN, "dropoff": near}, "k1")
    assert (quote.status_code, ride.status_code) == (422, 422), (quote.text, ride.text)
    assert (
        quote.json()["detail"] == ride.json()["detail"] == "pickup and dropoff are the same place"
    )
    assert (quote.json()["field"], ride.json()["field"]) == ("dropoff_lat", "dropoff")


async def test_a_trip_end_outside_every_market_names_its_field(ingest: Ingest) -> None:
    london = {"lat": 51.5, "lon": -0.12}
    refused = [
        await ingest.request_ride("r1", {"pickup": london, "dropoff": DOWNTOWN}, "k1"),
        await ingest.request_ride("r2", {"pickup": DOWNTOWN, "dropoff": london}, "k2"),
    ]
    assert [r.status_code for r in refused] == [422, 422]
    assert [r.json()["error"] for r in refused] == ["outside_service_area"] * 2
    assert [r.json()["field"] for r in refused] == ["pickup", "dropoff"]


@pytest.mark.parametrize("key", ["", "k" * (MAX_IDEMPOTENCY_KEY + 1)], ids=["empty", "too long"])
async def test_an_idempotency_key_out_of_bounds_is_one_error(ingest: Ingest, key: str) -> None:
    """Empty and too long used to name two fields and two limits (128 and 255)."""
    response = await ingest.http.post(
        "/v1/rides",
        content=orjson.dumps(SF_TRIP),
        headers={**ingest.auth("rider", "r1"), "Idempotency-Key": key},
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "idempotency_key"


async def test_an_idempotency_key_at_the_bound_is_taken(ingest: Ingest) -> None:
    response = await ingest.request_ride("r1", SF_TRIP, "k" * MAX_IDEMPOTENCY_KEY)
    assert response.status_code == 202, response.text


async def test_a_retry_spelling_the_same_request_otherwise_replays_the_ride(
    ingest: Ingest,
) -> None:
    """The Idempotency-Key remembers the request, not its spelling: `"quote_id": null` (as in
    the OpenAPI example) or absent, keys in another order, an extra key in a point that the
    server ignores. The null was a 422, "used with another request body"."""
    first = await ingest.request_ride("r1", SF_TRIP, "same-ride")
    assert first.status_code == 202, first.text
    pickup, dropoff = SF_TRIP["pickup"], SF_TRIP["dropoff"]
    for spelling in (
        {**SF_TRIP, "quote_id": None},
        {"dropoff": {"lon": dropoff["lon"], "lat": dropoff["lat"]}, "pickup": pickup},
        {"pickup": {**pickup, "accuracy_m": 5}, "dropoff": dropoff},
    ):
        retry = await ingest.request_ride("r1", spelling, "same-ride")
        assert (retry.status_code, retry.json()) == (202, first.json()), (spelling, retry.text)
    other = await ingest.request_ride("r1", {**SF_TRIP, "quote_id": "q-other"}, "same-ride")
    assert other.status_code == 422 and other.json()["field"] == "idempotency_key", other.text


async def test_a_status_with_an_unknown_field_is_refused_naming_it(ingest: Ingest) -> None:
    """As a ride request's unknown field is (PUT status took {"status": ..., "x": ...})."""
    response = await ingest.http.put(
        "/v1/drivers/d1/status",
        json={"status": "offline", "colour": "red"},
        headers=ingest.auth("driver", "d1"),
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "colour"


# Outside the documented pattern (ASCII letters and digits, '-', '_', '.'), yet check_id took
# them: any Unicode letter or digit passed, so a fullwidth `d-4２` was another driver than d-42.
NON_ASCII_IDS = {"accented": "été", "Arabic-Indic digits": "١٢", "a fullwidth digit": "d-4２"}


@pytest.mark.parametrize("driver_id", NON_ASCII_IDS.values(), ids=NON_ASCII_IDS.keys())
async def test_a_non_ascii_driver_id_is_a_422_naming_driver_id_on_every_route(
    ingest: Ingest, redis: aioredis.Redis, driver_id: str
) -> None:
    ops = ingest.auth("ops", "ops-1")  # may act for any driver: only the id can be at fault
    answers = {
        "ping": await ingest.http.post(
            f"/v1/drivers/{driver_id}/location", json=DOWNTOWN, headers=ops
        ),
        "status": await ingest.http.put(
            f"/v1/drivers/{driver_id}/status", json={"status": "offline"}, headers=ops
        ),
        "read": await ingest.http.get(f"/v1/drivers/{driver_id}", headers=ops),
    }
    for route, response in answers.items():
        assert response.status_code == 422, f"{route}: {response.status_code} {response.text}"
        assert response.json()["field"] == "driver_id", f"{route}: {response.text}"
    batch = await ingest.batch([{"driver_id": driver_id, **DOWNTOWN}])
    assert batch.status_code == 202, batch.text
    assert batch.json()["rejected"] == 1 and batch.json()["errors"][0]["field"] == "driver_id"
    assert await redis.exists(telemetry(ingest.settings)) == 0


@pytest.mark.parametrize("value", ["NaN", "inf", "-inf", "1e400"])
async def test_a_quote_at_a_coordinate_that_is_no_number_says_it_must_be_finite(
    ingest: Ingest, value: str
) -> None:
    """Each was told "Input should be less than or equal to 90"."""
    params: dict[str, str | float] = {
        "pickup_lat": value,
        "pickup_lon": -122.42,
        "dropoff_lat": 37.78,
        "dropoff_lon": -122.41,
    }
    response = await ingest.http.get("/v1/quote", params=params, headers=ingest.auth("rider", "r1"))
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "pickup_lat"
    assert response.json()["detail"] == "Input should be a finite number", response.text


async def test_a_ping_ts_past_64_bits_is_told_the_range_of_ts(ingest: Ingest) -> None:
    """Decoded as a float, it was told "ts must be an integer", which it is."""
    body = b'{"lat": 37.7793, "lon": -122.4193, "ts": 99999999999999999999999999}'
    response = await ingest.http.post(
        "/v1/drivers/d1/location", content=body, headers=ingest.auth("driver", "d1")
    )
    assert response.status_code == 422 and response.json()["field"] == "ts", response.text
    assert "epoch milliseconds, at most 5 s ahead and 5 minutes old" in response.json()["detail"]
