"""The driver's inbox: offers and assignments learnt from polls or WebSocket pushes."""

from __future__ import annotations

from loadtests.behaviours.inbox import DriverInbox


def test_inbox_hands_out_an_offer_once_and_notices_a_lost_ride() -> None:
    inbox = DriverInbox()
    inbox.apply_snapshot(
        {"status": "available", "ride_id": None, "offer": {"ride_id": "r1", "expires_at": 5}}
    )
    offer = inbox.take_offer()
    assert offer is not None and offer.ride_id == "r1" and offer.expires_at == 5
    inbox.apply_snapshot(
        {"status": "available", "ride_id": None, "offer": {"ride_id": "r1", "expires_at": 5}}
    )
    assert inbox.take_offer() is None
    inbox.assign("r1")
    assert not inbox.lost("r1")
    inbox.apply_message({"type": "ride.cancelled", "ride_id": "r1"})
    assert inbox.lost("r1")


def test_inbox_reads_the_ride_id_as_assigned_only_once_the_driver_is_en_route() -> None:
    inbox = DriverInbox()
    inbox.apply_snapshot({"status": "offered", "ride_id": "r5", "offer": {"ride_id": "r5"}})
    assert inbox.ride_id is None and inbox.offer is not None
    inbox.apply_snapshot({"status": "en_route", "ride_id": "r5", "offer": None})
    assert inbox.ride_id == "r5" and inbox.offer is None and not inbox.lost("r5")
    inbox.apply_snapshot({"status": "available", "ride_id": None, "offer": None})
    assert inbox.lost("r5")


def test_inbox_follows_websocket_pushes() -> None:
    inbox = DriverInbox()
    inbox.apply_message({"type": "eta.updated", "ride_id": "r9", "eta_s": 30})
    assert inbox.take_offer() is None
    inbox.apply_message({"type": "ride.offered", "ride_id": "r9", "expires_at": 123})
    inbox.apply_message({"type": "ride.unmatched", "ride_id": "r9", "reason": "timeout"})
    assert inbox.take_offer() is None
    inbox.apply_message({"type": "ride.matched", "ride_id": "r10"})
    assert inbox.ride_id == "r10" and not inbox.lost("r10")


def test_inbox_ignores_a_lagging_snapshot_of_a_finished_ride() -> None:
    inbox = DriverInbox()
    inbox.assign("r1")
    inbox.forget("r1")
    inbox.apply_snapshot({"status": "available", "ride_id": "r1", "offer": None})
    assert inbox.ride_id is None
