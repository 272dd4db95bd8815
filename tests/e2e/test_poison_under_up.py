"""Poison on the ride stream of a real `ridepulse up`: an entry whose envelope is not UTF-8 and
one whose data is not JSON are dead-lettered with their reason, once by each group that reads
the stream; the group-less readers (ingest's notifier, the dashboard's feed) skip them; no
service process dies or restarts for them; and the next real ride is offered a driver."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from websockets.sync.client import ClientConnection, connect

from ridepulse.auth import mint_token
from ridepulse.contracts.envelope import Envelope
from ridepulse.keys import GlobalKeys, MarketKeys
from ridepulse.replies import text
from tests.e2e.test_ride_lifecycle import place_drivers
from tests.support.api import DOWNTOWN, City, offset
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.e2e
SF = MarketKeys("sf")  # the platform's default key prefix, "rp"
DEAD_LETTERS = GlobalKeys().dead_letters
RIDE_GROUPS = {"matching", "eta", "pricing"}  # at least these read rp:{sf}:rides
DROPOFF = offset(DOWNTOWN, -2000, 500)


def _poison() -> dict[str, dict[bytes, bytes]]:
    """Two entries that pass for envelopes until decoded; the value is what the reason says."""

    def envelope(ride: str, kind: str) -> dict[bytes, bytes]:
        return Envelope(kind, f"ride/{ride}", {"ride_id": ride}, "tests.poison").to_fields()

    return {
        "UnicodeDecodeError": envelope("poison-utf8", "ride.requested")
        | {b"type": b"ride.\xffrequested"},
        # a type the notifier routes, so it parses the data too (and must skip it)
        "not JSON": envelope("poison-json", "ride.offered") | {b"data": b"{garbage"},
    }


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _groups(db: redis.Redis) -> dict[str, dict[str, Any]]:
    info: Any = db.xinfo_groups(SF.rides)
    return {text(g["name"]): g for g in info}


def _past_and_acked(db: redis.Redis, names: set[str], last_id: str) -> bool:
    """Every group has read past `last_id` and holds nothing pending (so all is acked)."""
    groups = _groups(db)
    return all(
        _stream_id(text(groups[g]["last-delivered-id"])) >= _stream_id(last_id)
        and groups[g]["pending"] == 0
        for g in names
    )


def _dead_letters(db: redis.Redis, entry_ids: set[str]) -> list[dict[str, str]]:
    rows: Any = db.xrange(DEAD_LETTERS)
    letters = [{text(k): text(v) for k, v in fields.items()} for _, fields in rows]
    return [d for d in letters if d.get("entry_id") in entry_ids]


def _skipped_in_log(path: Path, event: str, entry_ids: set[str]) -> bool:
    """The service's log has an `event` line for every one of `entry_ids`."""
    if not path.exists():
        return False
    seen = set()
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"{event}"' in line:
            seen.add(orjson.loads(line).get("entry_id"))
    return entry_ids <= seen


def _pids(city: City) -> dict[str, int]:
    return {name: proc.pid for name, proc in city.platform.processes().items()}


def _offer_over_socket(ws: ClientConnection, ride_id: str, timeout_s: float) -> dict[str, Any]:
    """The driver's socket message offering `ride_id` (other messages are passed over)."""
    deadline = time.monotonic() + timeout_s
    while True:
        message: dict[str, Any] = orjson.loads(
            ws.recv(timeout=max(0.0, deadline - time.monotonic()))
        )
        if message["type"] == "ride.offered" and message.get("ride_id") == ride_id:
            return message


def test_poison_on_the_ride_stream_is_dead_lettered_per_group_and_no_service_restarts(
    city: City,
) -> None:
    db = city.platform.redis_client()  # the operator's user, as `ridepulse status` connects
    try:
        groups = set(_groups(db))
        assert groups >= RIDE_GROUPS, f"groups on {SF.rides}: {sorted(groups)}"
        before = _pids(city)
        assert {"ingest", "matching", "eta", "pricing", "dashboard"} <= set(before), before
        token = mint_token(city.secret, "driver", "d0")
        socket_url = f"ws://127.0.0.1:{city.platform.api_port}/v1/drivers/d0/ws?token={token}"
        # a connected driver, so the notifier reads every ride-stream entry, poison included
        with connect(socket_url, open_timeout=10) as ws:
            [driver] = place_drivers(city, [300])

            ids = {
                reason: text(db.xadd(SF.rides, fields))  # type: ignore[arg-type]
                for reason, fields in _poison().items()
            }
            entry_ids = set(ids.values())
            last = max(entry_ids, key=_stream_id)
            wait_until_sync(
                lambda: _past_and_acked(db, groups, last),
                timeout_s=30,
                what=f"every group of {SF.rides} past the poison, nothing pending",
            )
            letters = _dead_letters(db, entry_ids)
            for reason, entry_id in ids.items():
                mine = [d for d in letters if d["entry_id"] == entry_id]
                per_group = Counter(d["group"] for d in mine)
                assert per_group == dict.fromkeys(groups, 1), (
                    f"{reason} entry {entry_id}: expected one dead letter per group "
                    f"{sorted(groups)}, got {dict(per_group)}"
                )
                for d in mine:
                    assert d["stream"] == SF.rides, d
                    assert reason in d["reason"], f"{d['group']}: reason {d['reason']!r}"

            logs = city.platform.data_dir / "logs"
            wait_until_sync(
                lambda: _skipped_in_log(logs / "ingest.log", "notifier.entry_skipped", entry_ids),
                timeout_s=15,
                what="ingest's notifier skipping both poison entries",
            )
            wait_until_sync(
                lambda: _skipped_in_log(logs / "dashboard.log", "feed.entry_skipped", entry_ids),
                timeout_s=15,
                what="the dashboard's feed skipping both poison entries",
            )
            ready = city.http.get("/readyz")
            assert ready.status_code == 200, f"ingest not ready after the poison: {ready.text}"

            response = city.request_ride("rider-after-poison", DOWNTOWN, DROPOFF)
            assert response.status_code == 202, response.text
            ride_id = response.json()["ride_id"]
            offer = _offer_over_socket(ws, ride_id, timeout_s=30)
            assert offer["driver_id"] == driver, offer
            city.wait_ride(
                ride_id,
                lambda r: "offered" in [t["status"] for t in r["timeline"]],
                timeout_s=10,
                what="the ride after the poison offered to a driver",
            )
        after = _pids(city)
        assert after == before, f"service processes changed: before {before}, after {after}"
    finally:
        db.close()
