"""One way to call the RidePulse API from a locust user, with the simulation's success rules.

2xx is success. A 429 with `Retry-After` on telemetry is, where the caller says so, the server
shedding load as designed: recorded as a success, and the caller backs off for that long. 409
is, where the caller says so, a normal race (the offer expired, the rider cancelled first) and is
recorded as a success; 5xx and any other 4xx are failures, with the
server's `{"error", "detail"}` in the failure message so the report says what went wrong.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from locust.contrib.fasthttp import FastHttpSession

RACE_STATUS = 409
SHED_STATUS = 429
RETRY_BACKOFF_S = 0.5


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: dict[str, Any]
    retry_after_s: float = 0.0

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def shed(self) -> bool:
        return self.status == SHED_STATUS and self.retry_after_s > 0

    @property
    def raced(self) -> bool:
        return self.status == RACE_STATUS

    @property
    def transient(self) -> bool:
        """No answer or a server error: worth retrying when giving up would strand a ride."""
        return self.status == 0 or self.status >= 500


def call(
    client: FastHttpSession,
    method: str,
    path: str,
    *,
    name: str,
    token: str,
    json: Any = None,
    headers: dict[str, str] | None = None,
    race_ok: bool = False,
    shed_ok: bool = False,
    attempts: int = 1,
) -> Reply:
    """Send a request under `name` (ids stripped, so stats group by route) and judge it.

    With `attempts` > 1 a transient failure is retried after a short backoff; every attempt is
    still its own sample, so retries never hide a server error from the report.
    """
    reply = _once(client, method, path, name, token, json, headers, race_ok, shed_ok)
    for attempt in range(1, attempts):
        if not reply.transient:
            break
        time.sleep(RETRY_BACKOFF_S * attempt)  # gevent-patched: yields to the other users
        reply = _once(client, method, path, name, token, json, headers, race_ok, shed_ok)
    return reply


def get_ride(client: FastHttpSession, ride_id: str, token: str, attempts: int) -> Reply:
    """A ride's state, as riders and drivers both poll it (one stats row for every ride)."""
    path = f"/v1/rides/{ride_id}"
    return call(client, "GET", path, name="/v1/rides/[id]", token=token, attempts=attempts)


def _once(
    client: FastHttpSession,
    method: str,
    path: str,
    name: str,
    token: str,
    json: Any,
    headers: dict[str, str] | None,
    race_ok: bool,
    shed_ok: bool,
) -> Reply:
    all_headers = {"Authorization": f"Bearer {token}", **(headers or {})}
    with client.request(
        method, path, name=name, json=json, headers=all_headers, catch_response=True
    ) as response:
        status = int(response.status_code or 0)
        body = parse_body(response.content)
        reply = Reply(status, body, retry_after(response.headers))
        if reply.ok or (race_ok and reply.raced) or (shed_ok and reply.shed):
            response.success()
        else:
            response.failure(_describe(status, body, getattr(response, "error", None)))
        return reply


def retry_after(headers: Any) -> float:
    """`Retry-After` in seconds (the API sends whole seconds), or 0 when absent or unreadable."""
    try:
        return max(0.0, float((headers or {}).get("Retry-After") or 0))
    except (TypeError, ValueError):
        return 0.0


def parse_body(content: bytes | None) -> dict[str, Any]:
    """A JSON object body, or {} for anything else (empty, not JSON, a list is wrapped)."""
    if not content:
        return {}
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {"items": value}


def _describe(status: int, body: dict[str, Any], error: object) -> str:
    if status == 0:
        return f"no response: {error or 'connection failed or timed out'}"
    error, detail = body.get("error"), body.get("detail")
    if error or detail:
        return f"HTTP {status} {error}: {detail}"[:300]
    return f"HTTP {status}"
