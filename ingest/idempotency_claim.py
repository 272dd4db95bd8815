"""An Idempotency-Key is the rider's, whatever the market. Each market's ride script checks its
own record atomically, but two markets live in two slots: two requests with one key sent at once
to two markets would each find their market's record empty. So with several markets a request
first claims the key deployment-wide (SET NX, one key) for its market and body; the claim is
short until the ride is made, then lives as long as the market's record.

With one market there is nothing to race and no extra round trip."""

from __future__ import annotations

from typing import Any

from ingest.deps import Deps
from ridepulse.errors import Conflict, InvalidInput
from ridepulse.rides.store import IDEMPOTENCY_TTL_S

PENDING_TTL_S = 10  # a request that claimed the key and then failed frees it this soon
OTHER_BODY = "this Idempotency-Key was used with another request body"


class KeyInFlight(Conflict):
    """The first request with this key, in another market, has not been answered yet."""

    def __init__(self) -> None:
        super().__init__(
            "the first request with this Idempotency-Key is still being answered; retry",
            field="idempotency_key",
        )
        self.retry_after_s = 1


def claim_key(deps: Deps, rider_id: str, key: str) -> str:
    return f"{deps.settings.key_prefix}:idem-claim:{rider_id}:{key}"


async def claim(deps: Deps, market_id: str, rider_id: str, key: str, digest: str) -> str | None:
    """None: go on in this market (its script replays or refuses atomically). A ride id: the
    ride another market made for this key and body, to replay. Another body → 422; the other
    market still working on it → 409 with Retry-After."""
    if len(deps.markets.by_id) == 1:
        return None
    name = claim_key(deps, rider_id, key)
    if await deps.redis.set(name, f"{market_id}|{digest}", nx=True, ex=PENDING_TTL_S):
        return None
    held: Any = await deps.redis.get(name)
    if held is None:  # the holder failed and its claim expired just now
        raise KeyInFlight()
    holder, _, held_digest = held.decode().partition("|")
    if held_digest != digest:
        raise InvalidInput(OTHER_BODY, field="idempotency_key")
    if holder == market_id:
        return None
    ride_id: Any = await deps.redis.hget(deps.keys(holder).idempotency(rider_id, key), "ride_id")
    if ride_id is None:
        raise KeyInFlight()
    return str(ride_id.decode())


async def keep(deps: Deps, rider_id: str, key: str) -> None:
    """The ride is made: the claim lives as long as the market's record."""
    if len(deps.markets.by_id) > 1:
        await deps.redis.expire(claim_key(deps, rider_id, key), IDEMPOTENCY_TTL_S)
