# taxi-cli — every target a new user or CI needs. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test test-fast lint fmt bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,lint]"
	# bqemulator needs DuckDB's spatial extension; it ships in a wheel and is installed offline once.
	$(BIN)/python -c "import duckdb_extensions; duckdb_extensions.import_extension('spatial')"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install taxi-cli with its test and lint extras

# Offline (or in CI) with TAXI_SOURCE_URL unset, the demo serves the same real release
# files from tests/data on 127.0.0.1 and says so; otherwise it uses the release host.
run: $(STAMP) ## the main job: real months into the embedded Postgres, dbt models, status
	$(BIN)/python -m taxi_cli.demo --local-mirror tests/data/real tests/data

test: $(STAMP) ## run the whole test suite (starts its own Postgres and emulators)
	$(BIN)/pytest -q

test-fast: $(STAMP) ## unit tests only, no servers
	$(BIN)/pytest -q -m "not integration and not slow"

lint: $(STAMP) ## ruff, mypy --strict, hadolint, GitHub workflow and Compose schemas
	$(BIN)/ruff check taxi_cli tests bench
	$(BIN)/ruff format --check taxi_cli tests bench
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

fmt: $(STAMP) ## format the code
	$(BIN)/ruff format taxi_cli tests bench
	$(BIN)/ruff check --fix taxi_cli tests bench

bench: $(STAMP) ## load-pg against COPY, the course's SQL and DuckDB (BENCH_ARGS=--big: 7M rows)
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python -m bench.load_pg $(BENCH_ARGS)

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
