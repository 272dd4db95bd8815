"""`make bench`: RidePulse measured side by side with its peers (see docs/benchmarks.md).

Not a locust run: a load generator that can outpace one uvicorn worker (wrk, or the asyncio
client in loadgen.py), every figure against a peer in the same run, medians of repetitions."""
