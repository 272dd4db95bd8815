"""How long a shed client is told to wait: about the backlog above the threshold, bounded."""

from __future__ import annotations

from ingest.shedding import MAX_RETRY_AFTER_S, retry_after_s


def test_retry_after_covers_the_backlog_above_the_threshold() -> None:
    assert retry_after_s(lag_s=9.2, threshold_s=5.0) == 5


def test_retry_after_is_at_least_one_second_and_at_most_the_cap() -> None:
    assert retry_after_s(lag_s=5.01, threshold_s=5.0) == 1
    assert retry_after_s(lag_s=0.0, threshold_s=5.0) == 1
    assert retry_after_s(lag_s=500.0, threshold_s=5.0) == MAX_RETRY_AFTER_S
