"""Tunables of the feed. Defaults suit a laptop demo; tests shrink them to provoke edge cases."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FeedConfig:
    tick_s: float = 0.1  # at most 10 deltas per second (DESIGN §7)
    # Sending a frame costs the loop about the same per client whatever its size, so with many
    # clients the hub ticks less often (fewer, larger deltas): 0.1 s up to 500 clients, 0.4 s at
    # 2,000. An event then waits up to one tick longer, well inside the 1 s target.
    tick_s_per_client: float = 0.0002
    driver_sample_s: float = 0.5  # positions are sampled at 2 Hz, never read per ping
    # with nobody watching, reading every position twice a second is wasted work (a quarter of a
    # core at 8,000 drivers); a client that connects or asks for a snapshot wakes the sampler
    idle_driver_sample_s: float = 5.0
    # KPIs are recomputed over every ride shown: ten times a second at 100 rides/s was a tenth
    # of a core, for figures a person reads; ride changes still go out every tick
    kpi_refresh_s: float = 0.5
    metrics_sample_s: float = 1.0  # series points, services panel, KPIs over time windows
    reconcile_s: float = 10.0  # re-read active rides and surge in case an event was missed
    ring_size: int = 600  # deltas kept for resuming clients (one minute at 10 Hz)
    client_queue_size: int = 32  # frames a client may fall behind before it is coalesced
    max_resets: int = 50  # consecutive coalesces without a delivered frame: the client is dropped
    event_log_size: int = 200
    series_points: int = 300  # five minutes at one point per second
    finished_ride_ttl_ms: int = 60_000  # a finished ride stays on the page this long
    finished_ride_limit: int = 100
    match_window_ms: int = 300_000  # time-to-match percentiles over the last five minutes
    # At start the ride stream is read back over the longest window above (five minutes), newest
    # first, at most this many entries (about 20 MB; 0.7 s to read them and re-read their rides
    # on a laptop), so a huge stream cannot stall start-up. It covers five minutes up to ~160
    # events/s (the last minute up to ~800/s); past it the oldest part of the window is left out.
    backfill_entries_max: int = 50_000
    read_count: int = 500
