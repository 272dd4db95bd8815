"""`python -m loadtests.quality`: play the plan's scenarios through real platforms, then render
docs/dispatch-quality.md from what they recorded.

    python -m loadtests.quality [--only steady,spike] [--out docs/quality-runs] [--report-only]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from loadtests.quality import plan
from loadtests.quality.runner import run_stages, select


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.quality")
    parser.add_argument("--only", default="", help="comma-separated scenario names to play")
    parser.add_argument("--out", type=Path, default=Path("docs/quality-runs"))
    parser.add_argument("--page", type=Path, default=Path("docs/dispatch-quality.md"))
    parser.add_argument("--report-only", action="store_true", help="render from existing runs")
    parser.add_argument("--keep-data", action="store_true")
    args = parser.parse_args(argv)
    began = time.monotonic()
    if not args.report_only:
        only = {n for n in args.only.split(",") if n} or None
        run_stages(select(plan.STAGES, only), args.out, keep_data=args.keep_data)
    from loadtests.quality.report import render_page  # matplotlib only when rendering

    render_page(args.out, args.page, plan.SWEEP_WINDOWS)
    print(f"quality: {args.page} written; {time.monotonic() - began:.0f}s in all", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
