"""Request and response models for the OpenAPI document (with examples); the error body,
ErrorOut, is both services' (ridepulse.openapi_errors).

Hot-path routes validate with ingest.validation instead of instantiating these per request;
these models are what `/docs` shows and what clients are generated from, so each one states
what the server really accepts or answers. Request bodies that a route reads itself are
declared with `body_schema` and land in `components/schemas` (ingest.openapi)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from ingest.validation import (
    FUTURE_TOLERANCE_MS,
    ID_PATTERN,
    LAT_RANGE,
    LON_RANGE,
    MAX_ACCURACY_M,
    MAX_AGE_MS,
    MAX_HEADING_DEG,
    MAX_ID_LENGTH,
    MAX_SPEED_MPS,
)
from ridepulse.rides.state import DriverStatus, RideStatus

SF: dict[str, Any] = {"lat": 37.7793, "lon": -122.4193}
SCHEMA_REF = "#/components/schemas/{model}"
DRIVER_ID_PATTERN = ID_PATTERN  # the length is in maxLength

# Documented, not enforced by FastAPI: the routes check ids themselves (ingest.validation.check_id,
# 422 naming driver_id), the hot ping route skips FastAPI's parameter validation altogether.
DriverId = Annotated[
    str,
    Path(
        description="1-64 ASCII letters, digits, '-', '_' and '.', at least one letter or digit",
        examples=["drv-42"],
        json_schema_extra={
            "pattern": DRIVER_ID_PATTERN,
            "minLength": 1,
            "maxLength": MAX_ID_LENGTH,
        },
    ),
]


# ---- requests ---------------------------------------------------------------------------------


class LatLonIn(BaseModel):
    # extra keys are ignored by the server (ingest.validation.check_point), so they are allowed
    model_config = ConfigDict(json_schema_extra={"example": SF})
    lat: float = Field(ge=LAT_RANGE[0], le=LAT_RANGE[1])
    lon: float = Field(ge=LON_RANGE[0], le=LON_RANGE[1])


class PingIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "lat": 37.7793,
                "lon": -122.4193,
                "ts": 1795870000000,
                "speed_mps": 8.2,
                "heading": 90,
            }
        }
    )
    lat: float = Field(ge=LAT_RANGE[0], le=LAT_RANGE[1])
    lon: float = Field(ge=LON_RANGE[0], le=LON_RANGE[1])
    ts: int | None = Field(
        None,
        description=f"epoch ms; at most {FUTURE_TOLERANCE_MS // 1000} s ahead, "
        f"at most {MAX_AGE_MS // 60_000} min old (else 422); now if absent",
    )
    speed_mps: float | None = Field(None, ge=0, le=MAX_SPEED_MPS)
    heading: float | None = Field(None, ge=0, le=MAX_HEADING_DEG)
    accuracy_m: float | None = Field(None, ge=0, le=MAX_ACCURACY_M)


class FleetPingIn(PingIn):
    driver_id: str = Field(
        description="as the driver_id path parameter; an item that fails is rejected alone",
        json_schema_extra={
            "pattern": DRIVER_ID_PATTERN,
            "minLength": 1,
            "maxLength": MAX_ID_LENGTH,
        },
    )


class TelemetryBatchIn(BaseModel):
    pings: list[FleetPingIn] = Field(
        description="at most RIDEPULSE_MAX_BATCH_PINGS items (else 422); invalid items, and "
        "pings past their driver's rate (RIDEPULSE_PING_RATE_PER_S, as for a single ping), are "
        "counted in `rejected` and listed in `errors`, the others are accepted"
    )


class DriverStatusIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"status": "available"}}
    )
    status: Literal["available", "offline"]


class RideRequestIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "pickup": SF,
                "dropoff": {"lat": 37.7599, "lon": -122.4148},
                "quote_id": None,
            }
        },
    )
    pickup: LatLonIn
    dropoff: LatLonIn = Field(description="in the pickup's market, at least 50 m away")
    quote_id: str | None = Field(
        None, description="from GET /v1/quote: binds the fare; used up by this ride"
    )


# ---- responses --------------------------------------------------------------------------------


class LatLon(BaseModel):
    lat: float
    lon: float


class TimelineEntry(BaseModel):
    status: RideStatus
    at: int = Field(description="epoch ms")


class RideOut(BaseModel):
    ride_id: str
    rider_id: str
    market: str
    status: RideStatus
    version: int
    driver_id: str | None
    pickup: LatLon
    dropoff: LatLon
    fare: float | None
    surge: float | None
    quote_id: str | None
    pickup_eta_s: float | None
    trip_eta_s: float | None
    deadline_at: int = Field(description="epoch ms; unmatched by then, the ride expires")
    cancelled_by: str | None
    timeline: list[TimelineEntry]


class RideAccepted(BaseModel):
    ride_id: str
    status: RideStatus


class DriverOut(BaseModel):
    driver_id: str
    status: DriverStatus
    version: int
    ride_id: str | None


class OfferOut(BaseModel):
    ride_id: str
    expires_at: int | None = Field(description="epoch ms")
    pickup: LatLon
    dropoff: LatLon
    pickup_eta_s: float | None


class DriverView(BaseModel):
    """The driver's status, plus its market, current offer and last position (if it pinged)."""

    driver_id: str
    status: DriverStatus
    version: int | None = Field(None, description="absent when the driver never set a status")
    ride_id: str | None
    market: str
    offer: OfferOut | None
    lat: float | None = None
    lon: float | None = None
    ts: int | None = Field(None, description="epoch ms of the last ping")
    heading: float | None = None


class PingAccepted(BaseModel):
    accepted: Literal[1]


class TelemetryItemError(BaseModel):
    index: int
    field: str | None
    reason: str


class TelemetryAccepted(BaseModel):
    accepted: int
    rejected: int
    errors: list[TelemetryItemError] = Field(description="the first 100 rejected items")


class QuoteOut(BaseModel):
    quote_id: str
    fare: float
    currency: str = "USD"
    surge: float
    pickup_eta_s: float | None = Field(
        description="seconds until the driver matching would offer the ride to now arrives: the "
        "free driver fastest to the pickup within 10 km, by the learned speeds; null when no "
        "driver is free within 10 km"
    )
    trip_eta_s: float
    distance_m: float
    expires_at: int


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: Literal["ready", "waiting", "unavailable"]
    groups: dict[str, list[str]] | None = Field(None, description="consumer groups per stream")
    missing: list[str] | None = Field(None, description="group@market not declared yet")
    shedding_telemetry: bool | None = None
    durable_writes: bool | None = None
    redis: str | None = Field(None, description="why Redis did not answer (503 only)")
    notifier: str | None = Field(
        None, description="why the driver notifier stopped: offers miss drivers (503 only)"
    )
    stopped: dict[str, str] | None = Field(
        None,
        description="background loops that ended (notifier, heartbeat, shedding) and why"
        " (503 only)",
    )
    writes_refused: list[str] | None = Field(
        None,
        description="why Redis refuses writes (maxmemory, disk, replicas, AOF off with durable"
        " writes), one line a refusing server; a 503 only when every primary refuses every write"
        " (an AOF off, or one primary of several, is listed with a 200)",
    )


# ---- declarations used by the routes ----------------------------------------------------------

BODY_MODELS: dict[str, type[BaseModel]] = {}
"""Models that routes read themselves; ingest.openapi puts them in components/schemas."""


def body_schema(model: type[BaseModel], description: str | None = None) -> dict[str, Any]:
    """openapi_extra for a route that reads its body itself (hot path): a components ref."""
    BODY_MODELS[model.__name__] = model
    body: dict[str, Any] = {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": SCHEMA_REF.format(model=model.__name__)}}
        },
    }
    if description:
        body["description"] = description
    return {"requestBody": body}


def _ride_link(operation_id: str, description: str) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "parameters": {"ride_id": "$response.body#/ride_id"},
        "description": description,
    }


# The lifecycle as links, so clients and stateful fuzzers (schemathesis) can walk it.
RIDE_LINKS: dict[str, Any] = {
    "GetRide": _ride_link("get_ride", "The ride just requested"),
    "CancelRide": _ride_link("cancel_ride", "Cancel the ride just requested"),
}

RIDE_ACTION_LINKS: dict[str, Any] = {
    "CancelRide": _ride_link("cancel_ride", "The rider (before start) or its driver cancels"),
    "AcceptRide": _ride_link("accept", "The offered driver accepts"),
    "DeclineRide": _ride_link("decline", "The offered driver declines"),
    "ArrivedAtPickup": _ride_link("arrived", "The assigned driver is at the pickup"),
    "StartTrip": _ride_link("start", "The assigned driver starts the trip"),
    "CompleteTrip": _ride_link("complete", "The assigned driver ends the trip"),
}
