# syntax=docker/dockerfile:1
# taxi-cli as a container: `docker build -t taxi-cli .`, then
#   docker run --rm -v taxi-data:/data -e TAXI_PG_URL=postgresql://... taxi-cli backfill yellow 2021-01
# Meant mostly for --pg-url / GCS / BigQuery targets (see README "Deploying"); the embedded
# PostgreSQL also runs, as the non-root user, with its data under /data/pgdata (give it
# `docker run --shm-size=1g`).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: build the wheel (with the dbt project inside) and install it in a venv ----
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# gcc builds load-pg's C fast path (taxi_cli/postgres/_fastcopy.c); only the built module
# reaches the runtime stage. Distribution-pinned versions would break with every point
# release of the base image, hence DL3008 is ignored.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/taxi-cli
# Dependencies first, exactly the locked versions (each file checked against its hash),
# so that a code change does not reinstall dbt, polars and the Google clients.
COPY requirements/runtime.txt ./requirements/
RUN /opt/taxi-cli/bin/pip install --require-hashes --no-deps -r requirements/runtime.txt
COPY pyproject.toml setup.py README.md ./
COPY taxi_cli ./taxi_cli
# Then a wheel (exactly what `pip install .` ships: code, dbt project, release manifest).
RUN /opt/taxi-cli/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/taxi-cli/bin/pip install --no-deps /wheels/taxi_cli-*.whl \
    && /opt/taxi-cli/bin/taxi-cli --version \
    && /opt/taxi-cli/bin/python -c "import taxi_cli.postgres._fastcopy"

# ---- runtime: the venv only, a non-root user, data on a volume ----
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="taxi-cli" \
      org.opencontainers.image.description="Idempotent ETL for the NYC TLC trip records: extract, load to Postgres/GCS/BigQuery, backfill, dbt transform" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 taxi \
    && useradd --system --uid 10001 --gid taxi --create-home --home-dir /home/taxi \
       --shell /usr/sbin/nologin taxi \
    && mkdir -p /data \
    && chown taxi:taxi /data
COPY --from=builder /opt/taxi-cli /opt/taxi-cli
ENV PATH=/opt/taxi-cli/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TAXI_DATA_DIR=/data/downloads \
    TAXI_STATE_DIR=/data/state \
    TAXI_PG_DATA=/data/pgdata
# One volume for everything a run keeps: downloads, the gcs/bq ledger, locks, dbt's
# target dir and logs (under the state dir), the embedded PostgreSQL's data. Mount a
# config file at /data/taxi-cli.toml (the working dir) or anywhere with TAXI_CONFIG.
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
ENTRYPOINT ["taxi-cli"]
CMD ["--help"]
