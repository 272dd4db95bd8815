"""Prometheus metrics of the bus, shared by every consumer and producer in a process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_PROCESSED = Counter(
    "rp_events_processed_total", "Events handled and acknowledged", ["service", "group", "type"]
)
EVENTS_FAILED = Counter(
    "rp_events_failed_total", "Handler failures (entry left pending)", ["service", "group", "type"]
)
EVENTS_DEAD_LETTERED = Counter(
    "rp_events_dead_lettered_total", "Entries moved to dead letters", ["service", "group", "reason"]
)
ENTRIES_LOST = Counter(
    "rp_entries_lost_total",
    "Pending or undelivered entries that were trimmed away before processing",
    ["service", "group", "stream"],
)
GROUPS_RECREATED = Counter(
    "rp_groups_recreated_total", "NOGROUP recoveries (the server lost its data)", ["group"]
)
HANDLER_SECONDS = Histogram(
    "rp_handler_seconds",
    "Handler latency per event (per batch for batch handlers)",
    ["service", "type"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
CONSUMER_LAG = Gauge(
    "rp_consumer_lag", "Entries not yet delivered to the group", ["group", "stream"]
)
PINGS_CONFLATED = Counter(
    "rp_pings_conflated_total",
    "Pings skipped because a newer ping of the same driver was read in the same batch (not lost)",
    ["service", "group"],
)
# Every entry the process appends, whoever writes it: producers, the runtime's outputs and dead
# letters, the ride steps' scripts (by the count in their reply) and heartbeats (`rp:health`).
EVENTS_PUBLISHED = Counter(
    "rp_events_published_total",
    "Entries appended, per stream (events, dead letters, heartbeats)",
    ["stream"],
)
TRANSIENT_ERRORS = Counter(
    "rp_transient_errors_total",
    "Connection, timeout and OOM errors ridden out with backoff (not counted as failures)",
    ["service", "group"],
)
WRITES_REFUSED = Counter(
    "rp_writes_refused_total",
    "Outputs or dead letters the server refused (the entry stays pending)",
    ["service", "group", "error"],
)
SKIPPED_ENTRIES = Counter(
    "rp_stream_entries_skipped_total",
    "Entries a group-less stream reader (notifier, dashboard) could not read and skipped",
    ["reader"],
)
