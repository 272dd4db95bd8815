"""How a local cluster deals its 16,384 slots: every slot owned once, markets on distinct shards."""

from __future__ import annotations

import re
from pathlib import Path

from ridepulse.cluster import SLOTS, deal_slots, market_slot, slot_ranges

SCALING_DOC = Path(__file__).resolve().parents[2] / "docs" / "scaling.md"


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


def test_the_even_split_in_the_scaling_doc_is_the_one_dealt() -> None:
    """docs/scaling.md gave 0–5460 / 5461–10922, but slot 5461 goes to the first primary."""
    text = " ".join(SCALING_DOC.read_text(encoding="utf-8").split())
    found = re.search(r"3-primary cluster's even split \(([^)]*)\)", text)
    assert found, "docs/scaling.md no longer states the 3-primary even split"
    documented = [tuple(int(n) for n in run.split("–")) for run in found.group(1).split(", ")]
    owner = deal_slots(3, [])
    assert documented == [run for primary in range(3) for run in slot_ranges(owner, primary)]
