"""The surge tuning comparison, pure: block-by-block differences from the defaults, and the bar
a variant must clear to replace them."""

from __future__ import annotations

from dataclasses import replace

from loadtests.quality.runner import group_stages
from loadtests.quality.surge_report import SurgeRun
from loadtests.quality.surge_tuning import VARIANTS, better_everywhere, paired, stages, tables

BASE = SurgeRun(
    requests=40,
    declined_share=0.5,
    rides=20,
    fulfilment=0.5,
    served_share=0.25,
    mean_wait_s=40.0,
    utilisation=0.5,
    peak=3.0,
    back_after_s=40.0,
)


def _runs(**variant_blocks: list[SurgeRun]) -> dict[str, dict[str, SurgeRun]]:
    blocks = ["s13-sf", "s14-nyc"]
    runs = {"defaults": dict.fromkeys(blocks, BASE)}
    for name, values in variant_blocks.items():
        runs[name] = dict(zip(blocks, values, strict=True))
    return runs


def test_differences_are_taken_within_each_block() -> None:
    runs = _runs(cheaper=[replace(BASE, fulfilment=0.6), replace(BASE, fulfilment=0.4)])
    assert [round(d or 0, 3) for d in paired(runs, "cheaper", "fulfilment")] == [0.1, -0.1]


def test_a_variant_replaces_the_defaults_only_when_no_block_is_worse() -> None:
    everywhere = [replace(BASE, fulfilment=0.6), replace(BASE, mean_wait_s=35.0)]
    once_worse = [replace(BASE, fulfilment=0.9), replace(BASE, mean_wait_s=41.0)]
    same = [BASE, BASE]
    runs = _runs(everywhere=everywhere, once_worse=once_worse, same=same)
    assert better_everywhere(runs, "everywhere")
    assert not better_everywhere(runs, "once_worse")  # a big mean gain does not hide one loss
    assert not better_everywhere(runs, "same")  # no gain anywhere is no reason to change
    table = tables(runs)
    assert "| everywhere | +5 pts (+0 pts … +10 pts) |" in table
    assert table.count("| yes |") == 1


def test_every_variant_plays_every_seed_and_shares_one_platform_per_variant() -> None:
    played = stages((13, 14, 15, 16))
    assert len(played) == 2 * len(VARIANTS)
    assert len(group_stages(played)) == len(VARIANTS)  # one platform start per variant
    markets = {(s.seed, s.market) for stage in played for s in stage}
    assert markets == {(13, "sf"), (14, "nyc"), (15, "sf"), (16, "nyc")}
