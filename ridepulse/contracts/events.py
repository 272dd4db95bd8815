"""One typed payload model per (event type, version). A new version may only add optional
fields; removing or retyping a field makes a new type (tests/unit/test_contract_compat.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Payload(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Point(BaseModel):
    model_config = ConfigDict(frozen=True)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Ping(BaseModel):
    model_config = ConfigDict(frozen=True)
    driver_id: str
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    ts: int = Field(description="epoch ms at the device")
    speed_mps: float | None = None
    heading: float | None = None
    accuracy_m: float | None = None


class DriverLocationV1(Payload):
    """One or many pings in one entry: batching is what reaches the throughput goals."""

    pings: list[Ping]


class DriverStatusV1(Payload):
    driver_id: str
    status: Literal["available", "offline"]
    version: int


class RideRequestedV1(Payload):
    ride_id: str
    rider_id: str
    pickup: Point
    dropoff: Point
    requested_at: int
    deadline_at: int
    quote_id: str | None = None
    fare: float | None = None
    surge: float | None = None
    version: int


class RideOfferedV1(Payload):
    ride_id: str
    driver_id: str
    pickup_eta_s: float
    expires_at: int
    attempt: int
    version: int


class RideMatchedV1(Payload):
    ride_id: str
    driver_id: str
    pickup_eta_s: float | None = None
    version: int


class RideUnmatchedV1(Payload):
    """The ride goes back to `requested`: offer declined or timed out, or driver cancelled.
    An offer declined or timed out past the ride's deadline is followed, in the same step, by
    ride.expired: the ride is not offered again."""

    ride_id: str
    driver_id: str
    reason: Literal["declined", "timeout", "driver_cancelled"]
    version: int
    # "driver_lost" (with reason timeout): the assigned driver fell silent before pickup
    cause: str | None = None


class RideDriverArrivedV1(Payload):
    ride_id: str
    driver_id: str
    version: int


class RideStartedV1(Payload):
    ride_id: str
    driver_id: str
    version: int


class RideCompletedV1(Payload):
    ride_id: str
    driver_id: str
    fare: float | None = None
    version: int


class RideCancelledV1(Payload):
    ride_id: str
    by: Literal["rider", "driver", "ops"]
    version: int
    driver_id: str | None = None  # the driver freed by the cancel, so its app hears of it
    cause: str | None = None  # "driver_lost" (by ops): the driver fell silent during the trip


class RideExpiredV1(Payload):
    """No driver took the ride before its deadline: it waited past it, or the offer in flight
    at the deadline was declined or timed out (then right after that ride.unmatched)."""

    ride_id: str
    version: int


class EtaUpdatedV1(Payload):
    ride_id: str
    driver_id: str
    phase: Literal["pickup", "trip"]
    eta_s: float


class SurgeCell(BaseModel):
    model_config = ConfigDict(frozen=True)
    cell: str
    multiplier: float


class SurgeUpdatedV1(Payload):
    market: str
    cells: list[SurgeCell]


class ServiceHeartbeatV1(Payload):
    service: str
    consumer: str
    processed: int
    failed: int
    dead_lettered: int
    conflated: int = 0  # pings skipped as superseded by a newer one (telemetry consumers)
    lag: int
    pending: int
    pid: int
    rss_bytes: int
    # ingest only: the share of pings it lets in (below 1 while it sheds them)
    telemetry_admitted: float | None = None
