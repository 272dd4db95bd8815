"""GET /v1/quote: fare, surge, pickup and trip ETA; the quote_id is honoured for 2 minutes, for
one ride of this rider along this trip (ingest.quotes)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from ingest.deps import get_deps, principal
from ingest.quotes import make_quote
from ingest.responses import JSON
from ingest.schemas import QuoteOut
from ingest.validation import check_trip
from ridepulse.auth import Principal
from ridepulse.openapi_errors import error_responses

router = APIRouter(tags=["rides"])
# NaN, inf and 1e400 (inf once parsed) are not numbers a trip has: "Input should be a finite
# number", where the bounds alone said "less than or equal to 90" of NaN
Lat = Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)]
Lon = Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)]


@router.get(
    "/v1/quote",
    response_model=QuoteOut,
    responses=error_responses(401, 403, 422, 429, 503),
    summary="Price and ETAs of a trip",
)
async def quote(
    request: Request,
    who: Annotated[Principal, Depends(principal)],
    pickup_lat: Lat,
    pickup_lon: Lon,
    dropoff_lat: Lat,
    dropoff_lon: Lon,
) -> JSON:
    who.require("rider", "ops")
    deps = get_deps(request)
    pickup, dropoff = (pickup_lat, pickup_lon), (dropoff_lat, dropoff_lon)
    market = check_trip(deps.markets, pickup, dropoff, ("pickup_lat", "dropoff_lat"))
    await deps.limit_rider(who, market.id, "quotes", deps.settings.rider_quotes_per_min)
    result = await make_quote(deps, who.subject, pickup, dropoff)
    return JSON({**asdict(result), "currency": "USD"})
