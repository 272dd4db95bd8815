"""How a local cluster deals its 16,384 slots: every slot owned once, markets on distinct shards."""

from __future__ import annotations

from ridepulse.cluster import SLOTS, deal_slots, market_slot, slot_ranges


def test_every_slot_has_exactly_one_owner_in_contiguous_runs() -> None:
    owner = deal_slots(3, ["sf"])
    runs = [r for primary in range(3) for r in slot_ranges(owner, primary)]
    covered = sorted(slot for start, end in runs for slot in range(start, end + 1))
    assert covered == list(range(SLOTS))


def test_markets_that_hash_to_one_shard_are_dealt_to_different_primaries() -> None:
    owner = [slot * 3 // SLOTS for slot in range(SLOTS)]
    # two market ids whose slots fall in the same even third of the slot space
    first = "sf"
    second = next(
        f"m{i}" for i in range(10_000) if owner[market_slot(f"m{i}")] == owner[market_slot(first)]
    )
    dealt = deal_slots(3, [first, second])
    assert dealt[market_slot(first)] != dealt[market_slot(second)]


def test_more_markets_than_primaries_still_get_a_valid_deal() -> None:
    markets = [f"m{i}" for i in range(5)]
    dealt = deal_slots(2, markets)
    assert set(dealt) == {0, 1}
    assert {dealt[market_slot(m)] for m in markets} == {0, 1}
