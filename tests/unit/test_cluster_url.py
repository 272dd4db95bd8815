"""A `redis+cluster://` URL names every node of the cluster, and each one seeds the client."""

from __future__ import annotations

import pytest

from ridepulse.cli_checks import redact_url
from ridepulse.redis_url import cluster_seeds


def test_every_node_after_the_first_is_a_startup_node() -> None:
    url = "redis+cluster://ingest:p%40ss@127.0.0.1:7001,127.0.0.1:7002,10.0.0.3:7003/0"
    first, seeds = cluster_seeds(url)
    assert first == "redis://ingest:p%40ss@127.0.0.1:7001/0"
    assert seeds == [("127.0.0.1", 7002), ("10.0.0.3", 7003)]


@pytest.mark.parametrize(
    ("url", "first"),
    [
        ("redis+cluster://:pw@valkey-1:6379/0", "redis://:pw@valkey-1:6379/0"),
        ("redis+cluster://valkey-1:6379", "redis://valkey-1:6379"),
        (
            "redis+cluster://:pw@h:1,h:2?health_check_interval=5",
            "redis://:pw@h:1?health_check_interval=5",
        ),
    ],
)
def test_a_one_node_url_is_what_it_was_and_options_stay(url: str, first: str) -> None:
    assert cluster_seeds(url)[0] == first


def test_an_error_line_shows_every_node_and_no_password() -> None:
    url = "redis+cluster://:secret-pw@127.0.0.1:7001,127.0.0.1:7002/0"
    assert redact_url(url) == "redis+cluster://***@127.0.0.1:7001,127.0.0.1:7002/0"
