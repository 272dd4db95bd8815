"""Dashboard fan-out (issue 4): a moving fleet and a steady flow of ride events, watched by
hundreds of WebSocket clients of one dashboard process. A report, not a timed test.

    python -m loadtests.bench.dashboard_fanout [--clients 500] [--drivers 2000] [--seconds 20]
                                               [--repeats 3] [--out docs/benchmarks-dashboard.md]

Each repetition starts the embedded server, the dashboard alone and a city (fanout/city.py:
the fleet's pings and rides' Lua steps, matching not started) on loopback (fanout/run.py), and
connects the clients (fanout/clients.py). The page (fanout/page.py) is rendered from the run's
JSON, written beside it (--out with .json); its hand-written blocks are kept."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from loadtests.bench.fanout.city import run_city
from loadtests.bench.fanout.page import render
from loadtests.bench.fanout.run import bench
from loadtests.bench.publish import command_line, publish


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench.dashboard_fanout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--clients", type=int, default=500)
    add("--drivers", type=int, default=2000)
    add("--ride-events", type=float, default=10.0, help="ride events per second")
    add("--ping-interval", type=float, default=4.0, help="seconds between a driver's pings")
    add("--seconds", type=int, default=20, help="measured window per repetition")
    add("--warmup", type=float, default=5.0, help="seconds after the last client connects")
    add("--repeats", type=int, default=3)
    add("--measure-every", type=int, default=10, help="time events at every Nth client")
    add("--out", type=Path, default=Path("docs/benchmarks-dashboard.md"))
    add("--city", action="store_true", help=argparse.SUPPRESS)
    add("--redis-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.city:
        asyncio.run(run_city(args.redis_url, args.drivers, args.ride_events, args.ping_interval))
        return
    results = asyncio.run(bench(args))
    given = sys.argv[1:] if argv is None else argv
    results["command"] = command_line("loadtests.bench.dashboard_fanout", given)
    publish(results, args.out.with_suffix(".json"), args.out, render)


if __name__ == "__main__":
    main()
