"""Liveness, readiness (Redis reachable and taking writes, the downstream groups declared) and
metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ingest.deps import get_deps
from ingest.responses import JSON
from ingest.schemas import HealthOut, ReadyOut
from ridepulse.openapi_errors import RETRY_AFTER

router = APIRouter(tags=["operations"])
# Rides progress only if matching reads them; eta and pricing enrich rides and are reported.
REQUIRED_GROUPS = ("matching",)
REPORTED_GROUPS = ("matching", "eta", "pricing")
# README: every 503 carries Retry-After, this one too (a probe or a client waiting for ingest)
NOT_READY = {"Retry-After": "1"}


@router.get("/healthz", response_model=HealthOut, summary="The process is alive")
async def healthz() -> JSON:
    return JSON({"status": "ok"})


@router.get(
    "/readyz",
    response_model=ReadyOut,
    responses={
        503: {
            "model": ReadyOut,
            "description": "Redis down or refusing writes, a required group missing or a "
            "background loop stopped",
            "headers": RETRY_AFTER,
        }
    },
    summary="Redis answers and every consumer group exists",
)
async def readyz(request: Request) -> JSON:
    deps = get_deps(request)
    try:
        await deps.redis.ping()
    except Exception as exc:
        return JSON({"status": "unavailable", "redis": str(exc)}, 503, headers=NOT_READY)
    groups: dict[str, list[str]] = {}
    missing: list[str] = []
    for market in deps.markets.markets:
        stream = deps.keys(market.id).rides
        try:
            info: Any = await deps.redis.xinfo_groups(stream)
        except Exception:
            info = []
        names = [g["name"].decode() for g in info]
        groups[stream] = names
        missing += [f"{g}@{market.id}" for g in REPORTED_GROUPS if g not in names]
    blocking = [m for m in missing if m.split("@")[0] in REQUIRED_GROUPS]
    # a background loop that ended: the notifier (offers no longer reach drivers' WebSockets),
    # the heartbeat (ops see ingest dead), the shedding check (admission frozen as it was)
    stopped = dict(deps.background.stopped) if deps.background else {}
    notifier_failure = getattr(deps.notifier, "failure", None)
    if notifier_failure:
        stopped["notifier"] = notifier_failure
    blocking += [f"{name}: {why}" for name, why in stopped.items()]
    # Redis refusing writes (memory, disk, replicas, an AOF off): listed; a 503 only when every
    # primary refuses every write (one primary fails its markets only, an AOF off durable rides)
    writes_refused = list(deps.refusals.problems) if deps.refusals else []
    if deps.refusals and deps.refusals.blocks:
        blocking += writes_refused
    body: dict[str, Any] = {
        "status": "ready" if not blocking else "waiting",
        "groups": groups,
        "missing": missing,
        "shedding_telemetry": deps.admission.shedding,
        "durable_writes": deps.durable_writes,
    }
    if stopped:
        body["stopped"] = stopped
    if notifier_failure:
        body["notifier"] = notifier_failure
    if writes_refused:
        body["writes_refused"] = writes_refused
    if blocking:
        return JSON(body, 503, headers=NOT_READY)
    return JSON(body)
