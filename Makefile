# Storyloom: `make run` starts the demo, `make test` passes every test. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: run test test-fast test-postgres lint format install system-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## Debian chromium (browser tests) and prometheus (metrics scrape test), when missing and root.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v prometheus >/dev/null 2>&1 || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "note: missing$$missing; install with 'sudo apt-get install$$missing' or the browser/metrics tests will skip"; \
	  fi; \
	fi

run: install
	$(BIN)/storyloom run --demo

test: install system-deps
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/pytest -m "not browser and not slow" $(PYTEST_ARGS)

## The suite against PostgreSQL (127.0.0.1:5432, user postgres); a fresh database per run.
test-postgres: install
	@db="storyloom_test_$$$$"; \
	psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $$db" && \
	STORYLOOM_TEST_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:5432/$$db" $(BIN)/pytest -m "not browser" $(PYTEST_ARGS); \
	rc=$$?; psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $$db WITH (FORCE)"; exit $$rc

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: install
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/alert_latency.py
	$(BIN)/python bench/health.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
