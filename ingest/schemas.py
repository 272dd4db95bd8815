"""Request and response models for the OpenAPI document (with examples).

Hot-path routes validate with ingest.validation instead of instantiating these per request;
these models are what `/docs` shows and what the slower routes parse with."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ingest.validation import (
    FUTURE_TOLERANCE_MS,
    LAT_RANGE,
    LON_RANGE,
    MAX_ACCURACY_M,
    MAX_AGE_MS,
    MAX_HEADING_DEG,
    MAX_SPEED_MPS,
)

SF: dict[str, Any] = {"lat": 37.7793, "lon": -122.4193}


class LatLonIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": SF})
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
        f"at most {MAX_AGE_MS // 60_000} min old",
    )
    speed_mps: float | None = Field(None, ge=0, le=MAX_SPEED_MPS)
    heading: float | None = Field(None, ge=0, le=MAX_HEADING_DEG)
    accuracy_m: float | None = Field(None, ge=0, le=MAX_ACCURACY_M)


class FleetPingIn(PingIn):
    driver_id: str


class TelemetryBatchIn(BaseModel):
    pings: list[FleetPingIn]


class TelemetryAccepted(BaseModel):
    accepted: int
    rejected: int
    errors: list[dict[str, Any]] = Field(description="per rejected item: index, field, reason")


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
    dropoff: LatLonIn
    quote_id: str | None = None


class RideAccepted(BaseModel):
    ride_id: str
    status: str


class QuoteOut(BaseModel):
    quote_id: str
    fare: float
    currency: str = "USD"
    surge: float
    pickup_eta_s: float | None
    trip_eta_s: float
    distance_m: float
    expires_at: int


class ErrorOut(BaseModel):
    error: str
    detail: str
    field: str | None = None


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """openapi_extra for a route that reads its body itself (hot path)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorOut} for s in (401, 403, 404, 409, 413, 422, 429)
}
