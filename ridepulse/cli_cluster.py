"""`ridepulse cluster up`: a local Valkey Cluster to grow into, from the embedded binary."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from ridepulse import launcher
from ridepulse.cli_checks import fail, load_settings, owning_data_dir
from ridepulse.cluster import LocalCluster
from ridepulse.errors import RedisUnavailable
from ridepulse.foreground import print_url_until_stopped
from ridepulse.logs import configure_logging
from ridepulse.markets import load_markets

cluster_app = typer.Typer(help="A local Valkey Cluster (primaries, replicas, failover).")


@cluster_app.command("up")
def cluster_up(
    primaries: Annotated[int, typer.Option(min=1, help="shards")] = 3,
    replicas: Annotated[int, typer.Option(min=0, help="replicas per primary")] = 1,
    data_dir: Annotated[
        Path | None, typer.Option(help="node data (AOF, nodes.conf); default <data dir>/cluster")
    ] = None,
) -> None:
    """Start (or restart) the cluster, wait for cluster_state:ok, print its URL; Ctrl-C stops it."""
    settings = load_settings()
    markets = [m.id for m in load_markets(settings.markets_file, "all").markets]
    where = data_dir or launcher.cluster_dir(settings)
    with owning_data_dir(where):
        cluster = LocalCluster(
            where,
            primaries=primaries,
            replicas=replicas,
            markets=markets,
            key_prefix=settings.key_prefix,
        )
        try:
            cluster.start()
        except RedisUnavailable as exc:
            fail(exc.detail)
        # the revive loop's lines, on stderr: stdout carries the URL alone
        configure_logging("cluster", settings.log_level, settings.log_format)
        try:
            # the loop `ridepulse up --cluster` runs too: a dead node is restarted after twice
            # the node timeout, when its replica has taken over (docs/scaling.md)
            print_url_until_stopped(
                cluster.url,
                {signal.SIGINT, signal.SIGTERM, signal.SIGHUP},
                tick=cluster.revive_dead_nodes,
            )
        finally:
            cluster.stop()
