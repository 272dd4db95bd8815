"""Dispatch quality (issue 13): a seeded ground-truth city played through the real platform.

scenario.py (what to play: `Scenario`, demand shapes, behaviour hooks), city.py (the simulated
drivers and riders), runner.py (platforms and output), plan.py (what `make quality` plays),
records.py / metrics.py (the per-ride record and the maths), report.py (the page). See
loadtests/quality/README.md."""
