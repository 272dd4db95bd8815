"""The dashboard fan-out bench (`python -m loadtests.bench.dashboard_fanout`), one job a module."""
