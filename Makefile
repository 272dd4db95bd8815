# Everything runs from .venv; the first target to need it builds it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-cluster lint typecheck bench loadtest loadtest-ci chaos chaos-ci asyncapi chromium screenshot clean soak

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,load]'
	@touch $(STAMP)

.venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/ridepulse up

# The browser tests need Debian's Chromium; install it once when missing (never `playwright install`).
chromium:
	@test -x /usr/bin/chromium || (command -v apt-get >/dev/null && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium not installed: browser tests will be skipped")

test: $(STAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/mypy ridepulse ingest matching eta pricing dashboard
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The end-to-end suite again, every platform on its own 3-primary Valkey Cluster (ridepulse.cluster).
test-cluster: $(STAMP)
	RIDEPULSE_TEST_CLUSTER=1 $(BIN)/python -m pytest tests/e2e -m e2e $(PYTEST_ARGS)

# The README screenshot: `ridepulse up` with its simulated fleet, shot in Chromium once the city
# is busy (a few minutes); rewrites docs/img/dashboard.png.
screenshot: $(STAMP) chromium
	RIDEPULSE_SCREENSHOT=1 $(BIN)/python -m pytest tests/browser/test_dashboard_screenshot.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy ridepulse ingest matching eta pricing dashboard

asyncapi: $(STAMP)
	$(BIN)/ridepulse events asyncapi

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,load,bench]'
	$(BIN)/python -m loadtests.bench

loadtest: $(STAMP)
	$(BIN)/locust -f loadtests/locustfile.py --web-host 127.0.0.1 --web-port 8089

loadtest-ci: $(STAMP)
	$(BIN)/python -m loadtests.ci_run

# Churns driver ids through a running stack for minutes and fails if Valkey used_memory, the key
# count or a service's RSS keeps growing (not in CI; docs/reliability.md "Memory" has a run).
SOAK_ARGS ?=
soak: $(STAMP)
	$(BIN)/python -m tests.soak.memory_soak $(SOAK_ARGS)

# The chaos suite (loadtests/chaos, docs/reliability.md): a city under load while a random
# service is SIGKILLed every few seconds and, once, the Valkey server; then every guarantee is
# checked. CHAOS_ARGS passes options, e.g. CHAOS_ARGS=--no-valkey-kill or --seed 3.
CHAOS_ARGS ?=
chaos: $(STAMP)
	$(BIN)/python -m loadtests.chaos --duration-s 600 $(CHAOS_ARGS)

# The short run CI does after `make test` (about 2 minutes of faults, then the drain and checks).
chaos-ci: $(STAMP)
	$(BIN)/python -m loadtests.chaos --duration-s 120 --report loadtests/reports/chaos-ci.json $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .ridepulse .pytest_cache .mypy_cache .ruff_cache
