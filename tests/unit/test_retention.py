"""Which ride ids leave a rider's ride set: gone hashes, and finished rides past the newest N."""

from __future__ import annotations

from ridepulse.retention import rides_to_drop


def test_open_rides_stay_gone_ones_leave_and_only_the_newest_finished_are_kept() -> None:
    rides: list[tuple[bytes, tuple[bytes | None, bytes | None]]] = [
        (b"open-old", (b"requested", b"1")),
        (b"open-started", (b"started", b"2")),
        (b"done-1", (b"completed", b"10")),
        (b"done-2", (b"cancelled", b"20")),
        (b"done-3", (b"expired", b"30")),
        (b"expired-hash", (None, None)),
    ]
    assert sorted(rides_to_drop(rides, keep=2)) == [b"done-1", b"expired-hash"]
    assert sorted(rides_to_drop(rides, keep=5)) == [b"expired-hash"]
    assert rides_to_drop([(b"only", (b"matched", b"5"))], keep=1) == []
