# Everything runs from .venv; the first target to need it builds it. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# openapi-python-client caps typer below the project's pin, so it has a venv of its own, from
# pyproject.toml's openapi-generator dependency group (tests/e2e/test_openapi_client.py runs it).
GENERATOR_VENV := $(VENV)/openapi-generator
PYTEST_ARGS ?=
# The whole tree is formatted, linted and type-checked strictly (pyproject.toml has the rules).
TYPED := ridepulse ingest matching eta pricing dashboard loadtests tests
# apt-get needs root: sudo when not already root.
SUDO := $(shell test "$$(id -u)" = 0 || echo sudo)

.DEFAULT_GOAL := help

.PHONY: demo test test-cluster lint typecheck bench bench-cluster loadtest loadtest-ci chaos chaos-ci asyncapi chromium screenshot clean soak
.PHONY: help fmt ci deps test-slow-machine quality quality-surge-tuning quality-warmup

help: ## list the targets
	@grep -hE '^[a-zA-Z_.-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "} {printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,load]'
	@test -x $(GENERATOR_VENV)/bin/python || $(PYTHON) -m venv $(GENERATOR_VENV)
	$(GENERATOR_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(GENERATOR_VENV)/bin/python -m pip install --quiet --group openapi-generator
	@touch $(STAMP)

.venv: $(STAMP) ## create the virtualenv with the test and load extras (every target does it)

clean: ## remove the venv, the demo's data dir and the tool caches

demo: $(STAMP) ## the whole platform with a simulated city (ridepulse up)
	$(BIN)/ridepulse up

# What CI runs (.ci/run): fails on unformatted code, lint, type errors and failing tests.
ci: lint typecheck test chaos-ci test-cluster loadtest-ci ## everything CI checks, in CI's order

# System packages: only this target installs them (the browser tests need Debian's Chromium;
# never `playwright install`).
deps: ## install the system packages (Debian's chromium, via apt-get; sudo if not root)
	@if test -x /usr/bin/chromium; then echo "chromium: already installed"; else \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; fi

chromium: ## check for /usr/bin/chromium and say how to install it (installs nothing)
	@test -x /usr/bin/chromium || echo "note: /usr/bin/chromium is missing, so the browser" \
		"tests will be skipped; 'make deps' installs Debian's chromium package."

test: $(STAMP) chromium ## the test suite (creates the venv; browser tests skip without Chromium)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The suite with two busy processes alongside: half the machine, as on a slow CI runner. Catches
# tests that depend on the machine's speed (the kind that fail CI and pass locally).
test-slow-machine: $(STAMP) chromium ## the test suite with two CPU hogs alongside (a slower machine)
	$(BIN)/python -m pytest --cpu-hogs 2 $(PYTEST_ARGS)

# The end-to-end suite again, every platform on its own 3-primary Valkey Cluster (ridepulse.cluster).
test-cluster: $(STAMP) ## the e2e suite on a local 3-primary Valkey Cluster
	RIDEPULSE_TEST_CLUSTER=1 $(BIN)/python -m pytest tests/e2e -m e2e $(PYTEST_ARGS)

# The README screenshot: `ridepulse up` with its simulated fleet, shot in Chromium once the city
# is busy (a few minutes); rewrites docs/img/dashboard.png.
screenshot: $(STAMP) chromium ## rewrite docs/img/dashboard.png from a busy simulated city
	RIDEPULSE_SCREENSHOT=1 $(BIN)/python -m pytest tests/browser/test_dashboard_screenshot.py

fmt: $(STAMP) ## format the tree and apply ruff's safe fixes
	$(BIN)/ruff check --fix --exit-zero .
	$(BIN)/ruff format .

lint: $(STAMP) ## fail on unformatted code or a ruff finding (make fmt fixes most)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP) ## mypy --strict over the whole tree, tests and load tests included
	$(BIN)/mypy $(TYPED)

asyncapi: $(STAMP) ## regenerate docs/asyncapi.yaml from the event contracts
	$(BIN)/ridepulse events asyncapi

bench: $(STAMP) ## measure against peers; rewrites docs/benchmarks.md (long; needs a quiet machine)
	$(BIN)/python -m pip install --quiet -e '.[test,load,bench]'
	$(BIN)/python -m loadtests.bench

bench-cluster: $(STAMP) ## the cluster figures only (failover, cluster vs one server; ~8 min): docs/scaling.md
	$(BIN)/python -m loadtests.bench.cluster all

# Dispatch quality (issue 13): seeded cities through the real platform; rewrites
# docs/dispatch-quality.md, docs/quality-runs/*.csv and docs/img/quality-*.png (~12 min on 2 cores).
quality: $(STAMP) ## play the quality scenarios and rewrite docs/dispatch-quality.md
	$(BIN)/python -m loadtests.quality

# The ETA warm-up curve: nine minutes of one steady city (~12 min); rewrites docs/eta-warmup.md.
quality-warmup: $(STAMP) ## the ETA error against minutes since start, from one long run
	$(BIN)/python -m loadtests.quality.warmup

# Surge variants on four seeds each (~25 min on 2 cores); rewrites docs/surge-tuning.md's tables.
quality-surge-tuning: $(STAMP) ## tune surge's cap, smoothing and hysteresis from runs
	$(BIN)/python -m loadtests.quality.surge_tuning

# The stack's API on its port: RIDEPULSE_API_PORT as `ridepulse up` reads it, else its default.
loadtest: $(STAMP) ## locust's web UI on 127.0.0.1:8089 against a running stack
	$(BIN)/locust -f loadtests/locustfile.py --web-host 127.0.0.1 --web-port 8089 \
		--host http://127.0.0.1:$(or $(RIDEPULSE_API_PORT),8000)

loadtest-ci: $(STAMP) ## a short headless load on a fresh stack, gated on its SLOs
	$(BIN)/python -m loadtests.ci_run

# Churns driver ids through a running stack for minutes and fails if Valkey used_memory, the key
# count or a service's RSS keeps growing (not in CI; docs/reliability.md "Memory" has a run).
SOAK_ARGS ?=
soak: $(STAMP) ## churn driver ids through a stack; fail if memory keeps growing (not in CI)
	$(BIN)/python -m tests.soak.memory_soak $(SOAK_ARGS)

# The chaos suite (loadtests/chaos, docs/reliability.md): a city under load while a random
# service is SIGKILLed every few seconds and, once, the Valkey server; then every guarantee is
# checked. CHAOS_ARGS passes options, e.g. CHAOS_ARGS=--no-valkey-kill or --seed 3.
CHAOS_ARGS ?=
chaos: $(STAMP) ## the chaos suite, 10 minutes (services and Valkey SIGKILLed under load)
	$(BIN)/python -m loadtests.chaos --duration-s 600 $(CHAOS_ARGS)

# The short run CI does after `make test` (about 2 minutes of faults, then the drain and checks).
chaos-ci: $(STAMP) ## the 2-minute chaos run CI does
	$(BIN)/python -m loadtests.chaos --duration-s 120 --report loadtests/reports/chaos-ci.json $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .ridepulse .pytest_cache .mypy_cache .ruff_cache
