"""Prometheus metrics of the dashboard process (served on its /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CLIENTS = Gauge("rp_dashboard_clients", "WebSocket clients connected to this dashboard process")
DROPPED_FRAMES = Counter(
    "rp_dashboard_dropped_frames_total", "Frames discarded for clients too slow to read them"
)
CLIENTS_DROPPED = Counter(
    "rp_dashboard_clients_dropped_total", "Clients disconnected after falling behind for too long"
)
FEED_REFUSED = Counter(
    "rp_dashboard_feed_refused_total",
    "Feed WebSocket upgrades refused with 429: the token had its cap of sockets open",
)
DELTAS = Counter("rp_dashboard_deltas_total", "Deltas published to clients")
SNAPSHOTS = Counter("rp_dashboard_snapshots_total", "Snapshots built for clients")
READ_ERRORS = Counter("rp_dashboard_read_errors_total", "Failed Redis reads of the feed", ["loop"])
DRIVER_SAMPLES = Counter(
    "rp_dashboard_driver_samples_total", "Reads of every driver's position and status"
)
