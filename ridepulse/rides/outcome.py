"""What a step script answered, and the project error each refusal becomes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ridepulse.errors import Conflict, Forbidden, NotFound
from ridepulse.rides.projection import Driver, Ride, decode_hash
from ridepulse.rides.state import conflict_message


@dataclass(frozen=True, slots=True)
class Outcome:
    """`code` is ok, dup (already applied: no new event), skip, conflict, stale, forbidden,
    missing, retry or exists; `fields` is the ride (or driver) hash after the step; `appended`
    the entries the step wrote to the rides stream (a chained expiry makes it 2)."""

    code: str
    detail: str
    fields: dict[str, str]
    appended: int = 0

    @classmethod
    def from_reply(cls, raw: list[Any]) -> Outcome:
        """{code, detail, appended, hash...}; a refusal before any write is {code, detail}."""
        appended = int(raw[2]) if len(raw) > 2 else 0
        return cls(raw[0].decode(), raw[1].decode(), decode_hash(raw[3:]), appended)

    @property
    def applied(self) -> bool:
        """True when the ride is where the caller wanted it, now or by an earlier delivery."""
        return self.code in ("ok", "dup")


def ride_result(outcome: Outcome, *, ride_id: str, verb: str) -> Ride | None:
    """The ride after an applied step; None when the ride has moved on from what the caller
    saw (no longer in the step's state, driver busy, or a stale expected version: a zombie
    consumer's late step, DESIGN §11); raises for every other refusal."""
    if outcome.applied:
        return Ride.from_hash(outcome.fields)
    if outcome.code in ("skip", "stale"):
        return None
    raise refusal(outcome, ride_id=ride_id, verb=verb)


def refusal(outcome: Outcome, *, ride_id: str, verb: str) -> Exception:
    """The error for a refused step, naming the ride's current state."""
    status = outcome.fields.get("status", "unknown")
    if outcome.code == "missing":
        return NotFound(f"ride {ride_id} not found", field="ride_id")
    if outcome.code == "forbidden":
        return Forbidden(f"ride {ride_id} belongs to another rider")
    if outcome.code == "stale":
        return Conflict(f"ride is {status} at version {outcome.detail}; cannot {verb} (stale)")
    if outcome.code == "conflict" and outcome.detail == "driver":
        return Conflict(f"ride is {status} with another driver; cannot {verb}")
    if outcome.code == "conflict" and outcome.detail == "driver_state":
        return Conflict(f"ride is {status} but its driver does not hold it; cannot {verb}")
    if outcome.code == "conflict" and outcome.detail == "expired":
        return Conflict(f"the offer of ride {ride_id} has expired; cannot {verb}")
    if outcome.code == "skip" and outcome.detail == "not_due":
        return Conflict(f"the offer of ride {ride_id} has not expired yet; cannot {verb}")
    if outcome.code == "conflict" and outcome.detail == "exists":
        return Conflict(f"ride {ride_id} already exists", field="ride_id")
    if outcome.code == "conflict":
        return Conflict(conflict_message(status, verb))
    return Conflict(f"ride {ride_id} changed concurrently; cannot {verb}, try again")


def driver_result(outcome: Outcome, *, verb: str) -> Driver:
    """The driver after its own status change; Conflict naming its current status otherwise."""
    if outcome.applied:
        return Driver.from_hash(outcome.fields)
    raise Conflict(conflict_message(outcome.detail, verb, "driver"))
