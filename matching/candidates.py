"""Matching's offer budget; the search radii and the ranking by pickup ETA are shared with
ingest's quotes (ridepulse/pickups.py)."""

OFFER_ATTEMPTS_PER_PASS = 5  # candidates tried from one search before searching again
# per ride and try, above matching_concurrency (32): a ride can lose one race to every ride
# offered at the same time; past it the sweeper retries the ride
MAX_OFFER_ATTEMPTS = 100
