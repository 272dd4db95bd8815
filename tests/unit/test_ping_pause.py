"""docs/architecture.md (shedding): simulated drivers pause their pings for the Retry-After they
are given, over HTTP and over the WebSocket (the error frame's `retry_after_s`)."""

from __future__ import annotations

from loadtests.behaviours.ping_pause import PingPause, frame_retry_after_s

SHED_FRAME = {
    "type": "error",
    "error": "overloaded",
    "detail": "telemetry is being shed: dispatch is behind; retry in 13 s",
    "retry_after_s": 13,
}


def test_a_shed_frame_pauses_pings_for_its_retry_after() -> None:
    pause = PingPause()
    pause.hold(frame_retry_after_s(SHED_FRAME), now=100.0)
    assert pause.paused(112.9)
    assert not pause.paused(113.0)


def test_frames_without_a_retry_after_pause_nothing() -> None:
    invalid = {"type": "error", "error": "invalid_input", "detail": "not JSON"}
    offered = {"type": "ride.offered", "ride_id": "r1", "retry_after_s": 9}
    odd = {**SHED_FRAME, "retry_after_s": "13"}
    assert [frame_retry_after_s(m) for m in (invalid, offered, odd)] == [0.0, 0.0, 0.0]
    pause = PingPause()
    pause.hold(0.0, now=100.0)
    assert not pause.paused(100.0)


def test_a_second_refusal_extends_the_pause_never_shortens_it() -> None:
    pause = PingPause()
    pause.hold(10, now=0.0)
    pause.hold(2, now=1.0)
    assert pause.paused(9.5)
    pause.hold(10, now=5.0)
    assert pause.paused(14.5) and not pause.paused(15.0)
