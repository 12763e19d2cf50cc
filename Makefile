# taxi-cli — every target a new user or CI needs. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test test-fast lint fmt bench docs clean browser

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

lint: $(STAMP) ## ruff, mypy --strict, import layering, hadolint, workflow and Compose schemas
	$(BIN)/ruff check taxi_cli tests bench
	$(BIN)/ruff format --check taxi_cli tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	$(BIN)/kubernetes-validate --quiet --strict -k 1.30.0 deploy/k8s-indexed-job.yaml
	$(BIN)/check-jsonschema --schemafile deploy/schemas/cloud-run-job-v1.schema.json deploy/cloud-run-job.yaml

fmt: $(STAMP) ## format the code
	$(BIN)/ruff format taxi_cli tests bench
	$(BIN)/ruff check --fix taxi_cli tests bench

bench: $(STAMP) ## load-pg against COPY and the course's SQL; prints the ratios
	$(BIN)/python -m bench.load_pg
	$(BIN)/python -m bench.parquet $(PARQUET_BENCH_ARGS)  # PARQUET_BENCH_ARGS=--large: also 7M rows

# The report test opens the HTML in a real browser: Debian's headless Chromium. apt needs
# root, so this installs it as root or in CI and otherwise says how.
browser: ## headless Chromium for the report test (Debian package `chromium`)
	@if command -v chromium >/dev/null; then echo "chromium: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ] || [ -n "$$CI" ]; then \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends chromium; \
	else echo "run as root (or in CI): apt-get install -y chromium" >&2; exit 1; fi

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

docs: $(STAMP) ## regenerate the README's CLI reference from the commands
	$(BIN)/python -m taxi_cli.cli_docs README.md
