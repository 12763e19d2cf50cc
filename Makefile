# taxi-cli — every target a new user or CI needs. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The lock files: every package pinned with its hashes (`make lock` re-pins them from
# pyproject.toml's ranges). dev = the app + test + lint extras; runtime = the app only.
LOCK_DEV := requirements/dev.txt
LOCK_RUN := requirements/runtime.txt
COMPILE   = $(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 \
            --generate-hashes --quiet --custom-compile-command "make lock"

.DEFAULT_GOAL := help
.PHONY: help install run test test-fast lint fmt bench lock docs clean smoke-gcp browser

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml setup.py $(LOCK_DEV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# exactly the locked versions, each file checked against its hash; then taxi-cli itself
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(LOCK_DEV)
	$(BIN)/pip install --quiet --no-deps -e .
	# bqemulator needs DuckDB's spatial extension; it ships in a wheel and is installed offline once.
	$(BIN)/python -c "import duckdb_extensions; duckdb_extensions.import_extension('spatial')"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install taxi-cli with its test and lint extras

# Offline (or in CI) with TAXI_SOURCE_URL unset, the demo serves the same real release
# files from tests/data on 127.0.0.1 and says so; otherwise it uses the release host.
run: $(STAMP) ## the main job: real months into the embedded Postgres, dbt models, status
	$(BIN)/python -m taxi_cli.demo --local-mirror tests/data/real tests/data
	@echo "taxi-cli is installed in $(VENV): run $(BIN)/taxi-cli --help, or first 'source $(BIN)/activate'"

test: $(STAMP) browser ## run the whole test suite (starts its own Postgres, emulators and a headless Chromium)
	$(BIN)/pytest -q

smoke-gcp: $(STAMP) ## the cloud path against a real project (TAXI_GCP_PROJECT, TAXI_GCS_BUCKET, credentials)
	$(BIN)/python -m tests.smoke_gcp

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

bench: $(STAMP) ## load-pg against COPY, the course's SQL and DuckDB, and the Parquet conversion against Polars (BENCH_ARGS=--big, PARQUET_BENCH_ARGS=--large: 7M rows)
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python -m bench.load_pg $(BENCH_ARGS)
	$(BIN)/python -m bench.parquet $(PARQUET_BENCH_ARGS)

lock: $(STAMP) ## re-pin requirements/*.txt (with hashes) after a change to pyproject.toml
	$(COMPILE) --extra test --extra lint --output-file $(LOCK_DEV)
	$(COMPILE) --output-file $(LOCK_RUN)

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
