"""What-if contender, not a peer: ingest exactly as `ridepulse run ingest` runs it, but with the
objects built at start-up frozen out of the cyclic GC and a larger young generation.

`python -m loadtests.bench.ingest_gc_tuned` (same RIDEPULSE_* environment as the real service).
Measured beside ingest to show how much of the per-request cost is garbage collection."""

from __future__ import annotations

import gc

import ingest.service
from ridepulse.settings import Settings

YOUNG_GENERATION = 50_000  # default 700: a request allocates a few hundred tracked objects


def main() -> None:
    gc.collect()
    gc.freeze()  # imported modules, FastAPI/pydantic schemas: never garbage, never scanned again
    gc.set_threshold(YOUNG_GENERATION, 20, 100)
    ingest.service.main(Settings())


if __name__ == "__main__":
    main()
