# rebuy — two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
UV_VERSION := 0.13.8
# the Spark engine (pyspark, a large wheel) only where it runs: infra tests, or a rebuy.toml choosing it
SPARK := $(or $(filter 1,$(REBUY_TEST_INFRA)),$(shell grep -qsE '^[[:space:]]*compute[[:space:]]*=[[:space:]]*"spark"' $(or $(CONFIG),rebuy.toml) && echo 1))
STAMP := $(VENV)/.installed-$(shell cat uv.lock pyproject.toml | cksum | cut -d' ' -f1)$(if $(SPARK),-spark)

# Nothing in rebuy may phone home.
export FEAST_USAGE := False
export BENTOML_DO_NOT_TRACK := True
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export UV_PROJECT_ENVIRONMENT := $(VENV)

.DEFAULT_GOAL := help
.PHONY: help install demo test test-infra lint format bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

$(STAMP): uv.lock pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv sync --frozen --inexact --group dev $(if $(SPARK),--group spark)
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP) ## create .venv from uv.lock (only when missing or stale)

demo: $(STAMP) ## run the whole loop on a simulated shop and print where the reports are
	$(VENV)/bin/rebuy demo

test: lint ## lint, then run the test suite (and the notebooks)
	$(VENV)/bin/python -m pytest

test-infra: $(STAMP) ## only the shared-infrastructure tests, against Postgres and Redis on 127.0.0.1
	REBUY_TEST_INFRA=1 $(VENV)/bin/python -m pytest tests/infra

lint: $(STAMP) ## ruff and mypy as configured in pyproject.toml
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP) ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP) ## run every benchmark in benchmarks/ (slow; saves JSON + markdown)
	for b in benchmarks/*.py; do $(VENV)/bin/python $$b || exit 1; done

clean: ## remove the demo data (keeps .venv)
	rm -rf data demo
