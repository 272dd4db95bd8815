"""`python -m loadtests.chaos`: see loadtests/chaos/run.py for the timeline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loadtests.chaos.run import Config, run


def parse_args(argv: list[str] | None) -> Config:
    defaults = Config()
    parser = argparse.ArgumentParser(prog="python -m loadtests.chaos", description=__doc__)
    parser.add_argument("--duration-s", type=float, default=defaults.duration_s)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--drivers", type=int, default=defaults.drivers)
    parser.add_argument("--rate", type=float, default=defaults.rate_per_s, help="rides/s")
    parser.add_argument("--kill-every-s", type=float, default=defaults.kill_every_s)
    parser.add_argument(
        "--valkey-kill",
        action=argparse.BooleanOptionalAction,
        default=defaults.valkey_kill,
        help="SIGKILL the Valkey server once at half time (default: on)",
    )
    parser.add_argument("--min-completed", type=float, default=defaults.min_completed)
    parser.add_argument("--max-outage-s", type=float, default=None)
    parser.add_argument(
        "--ride-deadline-s",
        type=float,
        default=defaults.ride_deadline_s,
        help="RIDEPULSE_RIDE_DEADLINE_S of the platform under test",
    )
    parser.add_argument(
        "--offer-timeout-s",
        type=float,
        default=defaults.offer_timeout_s,
        help="RIDEPULSE_OFFER_TIMEOUT_S of the platform under test",
    )
    parser.add_argument("--report", type=Path, default=defaults.report)
    parser.add_argument("--keep-data", action="store_true", help="keep the data dir on success")
    a = parser.parse_args(argv)
    return Config(
        duration_s=a.duration_s,
        seed=a.seed,
        drivers=a.drivers,
        rate_per_s=a.rate,
        kill_every_s=a.kill_every_s,
        valkey_kill=a.valkey_kill,
        min_completed=a.min_completed,
        max_outage_s=a.max_outage_s,
        ride_deadline_s=a.ride_deadline_s,
        offer_timeout_s=a.offer_timeout_s,
        report=a.report,
        keep_data=a.keep_data,
    )


if __name__ == "__main__":
    sys.exit(run(parse_args(sys.argv[1:])))
