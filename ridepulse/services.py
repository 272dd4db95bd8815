"""The services `ridepulse run <name>` can start, and where each one's entry point lives."""

from __future__ import annotations

SERVICE_NAMES: tuple[str, ...] = (
    "ingest",
    "matching",
    "matching-geo",
    "eta",
    "pricing",
    "dashboard",
    "janitor",
)

# name → "module:function"; each function is `main(settings: Settings) -> None` and blocks
# until SIGTERM/SIGINT, then drains and returns.
ENTRY_POINTS: dict[str, str] = {
    "ingest": "ingest.service:main",
    "matching": "matching.service:main",
    "matching-geo": "matching.geo_service:main",
    "eta": "eta.service:main",
    "pricing": "pricing.service:main",
    "dashboard": "dashboard.service:main",
    "janitor": "ridepulse.janitor:main",
}
