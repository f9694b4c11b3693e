# Two commands do all the set-up on a fresh machine with Python >= 3.11 and make:
#   make demo   - the whole pipeline end to end on an embedded warehouse
#   make test   - the test suite
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_BOOTSTRAP := .tools/uv
UV := $(shell command -v uv 2>/dev/null || echo $(UV_BOOTSTRAP)/bin/uv)
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/.venv
PYTEST_ARGS ?= -n 2 --dist loadfile --timeout 1800 --durations=15

.PHONY: help install demo test test-extended test-fast dev serve lint clean

help:
	@echo "make demo   - install, then run the whole pipeline on synthetic data (DuckDB)"
	@echo "make test   - install, then run the test suite"
	@echo "make dev    - install, then open the Dagster UI on http://127.0.0.1:3000"
	@echo "make serve  - serve recommendations on http://127.0.0.1:8000"

# uv itself comes from PyPI into a private virtualenv when it is not on PATH.
$(UV_BOOTSTRAP)/bin/uv:
	$(PYTHON) -m venv $(UV_BOOTSTRAP)
	$(UV_BOOTSTRAP)/bin/pip install --quiet --disable-pip-version-check uv

# Installed with bytecode: every process (the demo, each dbt invocation, the heartbeat, the code
# server) then loads compiled modules instead of compiling dbt-core, dagster and pandas from source
# on every start -- which it would do each time under PYTHONDONTWRITEBYTECODE, and which cost
# 1.7 CPU-s per dbt invocation here (docs/operations.md, "dbt fixed cost"), and a Dagster run
# process ~20 s of CPU instead of ~11 s loading the code location (docs/DATA_FLOW.md). The stamp's name
# changed with it, so an environment installed without bytecode is compiled once. The project's
# own package (an editable install) is compiled on every `make install`: compileall skips what is
# up to date, and __pycache__ is ignored by git.
.venv/.installed-bytecode: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --compile-bytecode
	@touch $@

$(DAGSTER_HOME)/dagster.yaml: deploy/dagster.local.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp deploy/dagster.local.yaml $@

install: .venv/.installed-bytecode $(DAGSTER_HOME)/dagster.yaml
	@$(UV) run --frozen --no-sync python -m compileall -q music_platform

demo: install
	$(UV) run --frozen music-platform demo $(DEMO_ARGS)

test: install
	$(UV) run --frozen pytest -m "not extended" $(PYTEST_ARGS)

# The cross-warehouse equivalence suite (PostgreSQL, fakesnow): CI runs it after `make test`.
test-extended: install
	$(UV) run --frozen pytest -m extended $(PYTEST_ARGS)

test-fast: install
	$(UV) run --frozen pytest -m "not slow and not extended" $(PYTEST_ARGS)

dev: install
	$(UV) run --frozen dg dev -h 127.0.0.1 -p 3000

serve: install
	$(UV) run --frozen music-platform serve

# SQL: sqlfluff with the dbt templater renders the models as dbt does (dbt/.sqlfluff has the rules);
# it needs no warehouse: the DuckDB path is a throwaway file, and dbt's parse goes to its own
# target directory, away from the manifest Dagster reads.
SQLFLUFF_DIR := $(CURDIR)/dbt/target/sqlfluff
# deptry: every import of music_platform/ is a declared dependency and every dependency is
# imported (the exceptions, used without an import, are listed in pyproject.toml).
lint: install
	$(UV) run --frozen ruff check music_platform music_platform_tests benchmarks
	$(UV) run --frozen deptry music_platform
	MUSIC_PLATFORM_TARGET=duckdb DBT_TARGET_PATH=$(SQLFLUFF_DIR) \
		MUSIC_PLATFORM_DUCKDB_PATH=$(SQLFLUFF_DIR)/lint.duckdb \
		$(UV) run --frozen --directory dbt sqlfluff lint models

clean:
	rm -rf .venv .tools .dagster_home data dbt/target dbt/logs
