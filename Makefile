# Storyloom: `make run` starts the demo, `make test` passes every test. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: run test test-fast test-postgres fuzz lint format install system-deps bench bench-deps soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## Debian chromium (browser tests) and prometheus (metrics scrape test), when missing and root.
system-deps:
	@scripts/ensure-debian-packages "the browser/metrics tests will skip" chromium prometheus

## Alertmanager, the alert-latency benchmark's peer.
bench-deps:
	@scripts/ensure-debian-packages "the benchmark skips its peer" prometheus-alertmanager

run: install
	$(BIN)/storyloom run --demo

## In-process tests on every core (pytest-xdist), then the browser and real-process tests one at a time.
## (Exit code 5 is "nothing selected": a PYTEST_ARGS that picks tests of one lane only.)
test: install system-deps
	$(BIN)/pytest -n auto -m "not browser and not slow" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(BIN)/pytest -m "browser or slow" $(PYTEST_ARGS) || [ $$? -eq 5 ]

test-fast: install
	$(BIN)/pytest -n auto -m "not browser and not slow" $(PYTEST_ARGS)

## The suite against PostgreSQL (127.0.0.1:5432, user postgres); a fresh database per run.
test-postgres: install
	@db="storyloom_test_$$$$"; \
	psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $$db" && \
	STORYLOOM_TEST_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:5432/$$db" $(BIN)/pytest -m "not browser" $(PYTEST_ARGS); \
	rc=$$?; psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $$db WITH (FORCE)"; exit $$rc

## A long schemathesis pass over every operation, with and without a token (a fresh seed each run).
fuzz: install
	STORYLOOM_FUZZ=long $(BIN)/pytest -q -p no:cacheprovider --timeout 7200 tests/integration/test_api_fuzz.py $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: install bench-deps
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/alert_latency.py
	$(BIN)/python bench/storm.py --alerts 2000
	$(BIN)/python bench/health.py

## kill -9 at 20 seeded random points while plans run and alerts fire (SOAK_ARGS="--seed N --kills K").
soak: install
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
