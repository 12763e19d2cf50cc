"""Fixtures: real GCS and BigQuery protocol emulators, started once per session.

- `gcs_emulator`: gcp-storage-emulator in this process, on a free port, storing objects
  on disk under `root` (`{root}/{bucket}/{object}`).
- `bq_emulator`: bqemulator as a subprocess on free ports; it reads `gs://` URIs from
  the GCS emulator's disk root (`BQEMU_GCS_LOCAL_ROOT`), so load jobs see uploads.
- `gcs_proxy`, `bq_proxy`: recording proxies (tests/recording_proxy.py) in front of
  them; taxi-cli talks to the emulators only through these, so tests can assert on the
  REST requests, and BigQuery partition decorators behave as documented.
- `gcp`: per test, a fresh bucket and dataset name on those emulators, and the
  environment taxi-cli reads (`STORAGE_EMULATOR_HOST`, `TAXI_BQ_ENDPOINT`, ...).

Both emulators fail the session loudly (with their log) when they cannot start.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.recording_proxy import RecordingProxy, running

GCS_STORAGE_DIR = ".cloudstorage"  # gcp_storage_emulator.settings.STORAGE_DIR
BQ_PROJECT = "taxi-test"
START_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, timeout: float = 2.0) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return int(resp.status)


@dataclass
class GcsEmulator:
    url: str
    root: Path  # where `gs://{bucket}/{name}` is stored as `{root}/{bucket}/{name}`
    server: Any

    def path_of(self, bucket: str, name: str) -> Path:
        return self.root / bucket / name


@dataclass
class BqEmulator:
    url: str
    log: Path
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    from gcp_storage_emulator.server import create_server

    data_dir = tmp_path_factory.mktemp("gcs")
    server = create_server("127.0.0.1", 0, in_memory=False, data_dir=str(data_dir))
    server.start()
    try:
        port = server._api._httpd.server_address[1]  # bound port of port 0
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if _get(f"{url}/storage/v1/b?project=x") == 200:
                    break
            except OSError as exc:
                if time.monotonic() > deadline:
                    pytest.fail(f"gcp-storage-emulator at {url} did not answer: {exc}")
                time.sleep(0.1)
        yield GcsEmulator(url=url, root=data_dir / GCS_STORAGE_DIR, server=server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def bq_emulator(
    gcs_emulator: GcsEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BqEmulator]:
    work = tmp_path_factory.mktemp("bqemu")
    log_path = work / "bqemulator.log"
    rest, grpc = free_port(), free_port()
    # HOME stays: DuckDB's spatial extension was installed under ~/.duckdb by `make install`.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BQEMU_")}
    env |= {
        "BQEMU_GCS_LOCAL_ROOT": str(gcs_emulator.root),
        # Avro support would be downloaded from the DuckDB extension host: not offline.
        "BQEMU_ENABLE_FORMAT_EXTENSIONS": "false",
        "BQEMU_UPLOAD_STAGING_DIR": str(work / "uploads"),
    }
    cmd = [sys.executable, "-m", "bqemulator", "start", "--rest-port", str(rest)]
    cmd += ["--grpc-port", str(grpc), "--project", BQ_PROJECT, "--ephemeral"]
    cmd += ["--log-format", "console", "--log-level", "warning"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    url = f"http://127.0.0.1:{rest}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"bqemulator exited with {proc.returncode} before it was ready; log:\n"
                    + log_path.read_text(errors="replace")[-4000:]
                )
            try:
                if _get(f"{url}/readyz") == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"bqemulator not ready at {url} after {START_TIMEOUT:.0f}s; log:\n"
                    + log_path.read_text(errors="replace")[-4000:]
                )
            time.sleep(0.2)
        yield BqEmulator(url=url, log=log_path, process=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _anonymous() -> Any:
    """Credentials the emulators accept; google-auth's constructor is untyped."""
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="session")
def gcs_proxy(gcs_emulator: GcsEmulator) -> Iterator[RecordingProxy]:
    yield from running(gcs_emulator.url)


@pytest.fixture(scope="session")
def bq_proxy(bq_emulator: BqEmulator) -> Iterator[RecordingProxy]:
    yield from running(bq_emulator.url, decorators=True)


@dataclass
class Gcp:
    """One test's view of the emulators: its own bucket and dataset.

    `gcs_requests`/`bq_requests` hold what taxi-cli sent during the test; the helper
    clients below talk to the emulators directly, so they are not in there."""

    gcs: GcsEmulator
    bq: BqEmulator
    bucket: str
    dataset: str
    gcs_requests: RecordingProxy
    bq_requests: RecordingProxy
    project: str = BQ_PROJECT

    def storage(self) -> Any:
        from google.cloud import storage

        return storage.Client(
            project=self.project,
            credentials=_anonymous(),
            client_options={"api_endpoint": self.gcs.url},
        )

    def bigquery(self) -> Any:
        from google.cloud import bigquery

        return bigquery.Client(
            project=self.project,
            credentials=_anonymous(),
            client_options={"api_endpoint": self.bq.url},
        )

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row.values()) for row in self.bigquery().query(sql).result()]

    def table(self, name: str) -> str:
        return f"`{self.project}.{self.dataset}.{name}`"


@pytest.fixture
def gcp(
    gcs_emulator: GcsEmulator,
    bq_emulator: BqEmulator,
    gcs_proxy: RecordingProxy,
    bq_proxy: RecordingProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Gcp]:
    """A fresh bucket (created) and dataset name (not created) per test, env set up."""
    tag = uuid.uuid4().hex[:10]
    handle = Gcp(
        gcs=gcs_emulator,
        bq=bq_emulator,
        bucket=f"lake-{tag}",
        dataset=f"t_{tag}",
        gcs_requests=gcs_proxy,
        bq_requests=bq_proxy,
    )
    handle.storage().create_bucket(handle.bucket)
    gcs_proxy.clear()
    bq_proxy.clear()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_proxy.url)
    monkeypatch.setenv("TAXI_BQ_ENDPOINT", bq_proxy.url)
    monkeypatch.setenv("TAXI_GCP_PROJECT", BQ_PROJECT)
    monkeypatch.setenv("TAXI_GCS_BUCKET", handle.bucket)
    monkeypatch.setenv("TAXI_BQ_DATASET", handle.dataset)
    monkeypatch.setenv("TAXI_HTTP_TIMEOUT", "2")  # an emulator that is down fails fast
    yield handle
    handle.bigquery().delete_dataset(
        f"{BQ_PROJECT}.{handle.dataset}", delete_contents=True, not_found_ok=True
    )
