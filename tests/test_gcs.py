"""`load-gcs` against a real GCS protocol emulator (gcp-storage-emulator), real data."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner, Result

from taxi_cli.catalog import GREEN
from taxi_cli.cli import app
from taxi_cli.config import load_settings
from taxi_cli.errors import DataError
from taxi_cli.model import LedgerRow
from tests.conftest import SHARED_DATA
from tests.fixtures_gcp import Gcp, free_port
from tests.fixtures_mirror import Mirror
from tests.http_host import local_http

pytestmark = pytest.mark.integration

REAL_GREEN = SHARED_DATA / "real" / "green_tripdata_2020-04.csv.gz"
GREEN_ROWS = 35_612
PARQUET_NAME = "green/green_tripdata_2020-04.parquet"
CSV_NAME = "green/green_tripdata_2020-04.csv.gz"


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def results(stdout: str) -> list[dict[str, Any]]:
    """What each partition's destination did, from a load command's --json summary."""
    return [p["result"] for p in json.loads(stdout)["partitions"] if p["result"]]


@pytest.fixture
def real_green(mirror: Mirror) -> Path:
    return mirror.add_file(REAL_GREEN)


def gcs_ledger() -> list[LedgerRow]:
    """The gcs destination's ledger: read from the bucket (and local failures)."""
    from taxi_cli.choices import TargetName
    from taxi_cli.destinations import make

    (lake,) = make(load_settings(), TargetName.GCS, reading=True)
    return list(lake.ledger(read_only=True))


def cached_file(name: str) -> Path:
    return next(Path(os.environ["TAXI_DATA_DIR"]).rglob(name))


def test_uploads_typed_parquet_with_matching_md5_and_records_it(gcp: Gcp, real_green: Path) -> None:
    result = invoke("load-gcs", "green", "2020-04", "--json")
    assert result.exit_code == 0, result.stderr
    [item] = results(result.stdout)
    assert item["action"] == "uploaded"
    assert item["where"] == f"gs://{gcp.bucket}/{PARQUET_NAME}"
    assert item["rows"] == GREEN_ROWS

    blob = gcp.storage().bucket(gcp.bucket).get_blob(PARQUET_NAME)
    local = cached_file("green_tripdata_2020-04.parquet")
    assert blob.md5_hash == md5_b64(local.read_bytes()) == item["md5"]
    assert blob.metadata["taxi-cli-rows"] == str(GREEN_ROWS)
    assert blob.metadata["taxi-cli-source"] == "green_tripdata_2020-04.csv"
    # The stored object is the typed Parquet, whole.
    stored = gcp.gcs.path_of(gcp.bucket, PARQUET_NAME)
    frame = pl.read_parquet(stored)
    assert frame.height == GREEN_ROWS
    assert frame.schema["VendorID"] == pl.Int64
    assert frame.schema["fare_amount"] == pl.Float64

    # The object's metadata is the record: no local state is needed to know it is done.
    shutil.rmtree(os.environ["TAXI_STATE_DIR"], ignore_errors=True)
    [row] = gcs_ledger()
    assert (row.taxi, row.month, row.status, row.rows) == ("green", "2020-04", "done", GREEN_ROWS)
    assert row.sha256 == hashlib.sha256(REAL_GREEN.read_bytes()).hexdigest()
    assert row.file == f"gs://{gcp.bucket}/{PARQUET_NAME}"
    assert not Path(os.environ["TAXI_STATE_DIR"]).exists()  # reading created nothing


def test_csv_gz_object_is_the_release_bytes_and_a_rerun_skips_it(
    gcp: Gcp, real_green: Path
) -> None:
    first = invoke("load-gcs", "green", "2020-04", "--format", "csv.gz", "--json")
    assert first.exit_code == 0, first.stderr
    stored = gcp.gcs.path_of(gcp.bucket, CSV_NAME).read_bytes()
    assert stored == REAL_GREEN.read_bytes()
    blob = gcp.storage().bucket(gcp.bucket).get_blob(CSV_NAME)
    assert blob.md5_hash == md5_b64(REAL_GREEN.read_bytes())

    second = invoke("load-gcs", "green", "2020-04", "--format", "csv.gz", "--json")
    assert second.exit_code == 0, second.stderr
    [part] = json.loads(second.stdout)["partitions"]
    assert part["state"] == "skipped" and "same source sha256" in part["reason"]
    forced = invoke("load-gcs", "green", "2020-04", "--format", "csv.gz", "--force", "--json")
    [item] = results(forced.stdout)
    assert item["action"] == "unchanged"  # an identical object is not sent again
    assert item["generation"] == blob.generation  # not rewritten


def test_a_different_object_is_replaced(gcp: Gcp, real_green: Path) -> None:
    bucket = gcp.storage().bucket(gcp.bucket)
    bucket.blob(CSV_NAME).upload_from_string(b"stale,content\r\n")
    result = invoke("load-gcs", "green", "2020-04", "--format", "csv.gz", "--json")
    assert result.exit_code == 0, result.stderr
    assert results(result.stdout)[0]["action"] == "replaced"
    assert bucket.get_blob(CSV_NAME).md5_hash == md5_b64(REAL_GREEN.read_bytes())


def test_prefix_and_text_report(gcp: Gcp, real_green: Path) -> None:
    result = invoke("load-gcs", "green", "2020-04", "--prefix", "raw/tlc", "-q")
    assert result.exit_code == 0, result.stderr
    assert "green 2020-04 -> gcs" in result.stdout and "done" in result.stdout
    assert "1 done; 35,612 rows" in result.stdout
    assert gcp.storage().bucket(gcp.bucket).get_blob(f"raw/tlc/{PARQUET_NAME}") is not None


def test_zones_upload(gcp: Gcp, mirror: Mirror) -> None:
    mirror.add_zones()
    result = invoke("load-gcs", "zones", "--json")
    assert result.exit_code == 0, result.stderr
    stored = gcp.gcs.path_of(gcp.bucket, "misc/taxi_zone_lookup.csv").read_bytes()
    assert stored == (SHARED_DATA / "taxi_zone_lookup.csv").read_bytes()


@pytest.mark.parametrize("fmt", ["csv.gz", "parquet"])
def test_cached_file_changed_after_verification_is_refused(
    gcp: Gcp, real_green: Path, fmt: str
) -> None:
    # Verify and cache (and convert) first, then damage the cached file in place while
    # keeping its size and mtime, so extract's cache trusts it without reading it.
    ok = invoke("extract", "green", "2020-04", "--format", "parquet" if fmt == "parquet" else "csv")
    assert ok.exit_code == 0, ok.stderr
    cached = cached_file("green_tripdata_2020-04.csv.gz")
    stat = cached.stat()
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cached.write_bytes(bytes(data))
    os.utime(cached, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    result = invoke("load-gcs", "green", "2020-04", "--format", fmt)
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert "changed after it was verified" in line and str(cached) in line
    blobs = gcp.storage().bucket(gcp.bucket).list_blobs()
    assert [b.name for b in blobs if not b.name.startswith("_taxi_cli/runs/")] == []
    [row] = gcs_ledger()  # no object: the local record of the failure shows
    assert row.status == "failed"


def test_upload_refuses_a_parquet_that_lost_rows(gcp: Gcp, real_green: Path) -> None:
    from taxi_cli import extract
    from taxi_cli.gcp.gcs import Lake

    cfg = load_settings()
    source = extract.ensure_file(cfg, GREEN, "2020-04", parquet=True)
    assert source.parquet_path is not None
    pl.read_parquet(source.parquet_path).head(10).write_parquet(source.parquet_path)
    lake = Lake(cfg, bucket=gcp.bucket, prefix="")
    with pytest.raises(DataError, match="holds 10 rows but its source has 35,612"):
        lake.upload(source.parquet_path, PARQUET_NAME, fmt="parquet", source=source)
    assert lake.get(PARQUET_NAME) is None


def test_missing_bucket_exits_2_naming_it(gcp: Gcp, real_green: Path) -> None:
    result = invoke("load-gcs", "green", "2020-04", "--bucket", "no-such-bucket-here")
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "gs://no-such-bucket-here does not exist" in line and "--create-bucket" in line
    # Found by an object request (objects.list: in roles/storage.objectAdmin), never by
    # reading the bucket (storage.buckets.get: not in that role;
    # https://cloud.google.com/storage/docs/access-control/iam-roles).
    sent = [(r.method, r.path) for r in gcp.gcs_requests.recorded()]
    assert sent[0] == ("GET", "/storage/v1/b/no-such-bucket-here/o")
    assert ("GET", "/storage/v1/b/no-such-bucket-here") not in sent


def test_create_bucket(gcp: Gcp, real_green: Path) -> None:
    name = gcp.bucket + "-new"
    result = invoke("load-gcs", "green", "2020-04", "--bucket", name, "--create-bucket", "--json")
    assert result.exit_code == 0, result.stderr
    assert gcp.storage().bucket(name).get_blob(PARQUET_NAME) is not None
    # --create-bucket reads the bucket (storage.buckets.get), then creates it in the
    # location setting (no dataset in a gcs-only run).
    sent = [(r.method, r.path) for r in gcp.gcs_requests.recorded()]
    assert sent[:2] == [("GET", f"/storage/v1/b/{name}"), ("POST", "/storage/v1/b")]
    [create] = [r for r in gcp.gcs_requests.recorded() if (r.method, r.path) == sent[1]]
    assert create.json["name"] == name and create.json["location"] == "US"


def test_no_bucket_metadata_is_read_without_create_bucket(gcp: Gcp, real_green: Path) -> None:
    """roles/storage.objectAdmin lacks storage.buckets.get, so a load must not need it
    (https://cloud.google.com/storage/docs/access-control/iam-roles): every request is an
    object request (`/b/{bucket}/o...`) or an upload."""
    result = invoke("load-gcs", "green", "2020-04")
    assert result.exit_code == 0, result.stderr
    # The object is read once, before the upload; afterwards the upload's own response
    # describes it (a reload could see, and `_discard` delete, another writer's object).
    object_path = f"/storage/v1/b/{gcp.bucket}/o/{PARQUET_NAME.replace('/', '%2F')}"
    reads = [r for r in gcp.gcs_requests.recorded() if (r.method, r.path) == ("GET", object_path)]
    assert len(reads) == 1
    again = invoke("load-gcs", "green", "2020-04", "--force")
    assert again.exit_code == 0, again.stderr
    paths = {r.path for r in gcp.gcs_requests.recorded()}
    assert f"/storage/v1/b/{gcp.bucket}" not in paths
    assert all(
        p.startswith((f"/storage/v1/b/{gcp.bucket}/o", f"/upload/storage/v1/b/{gcp.bucket}/o"))
        for p in paths
    ), paths


def test_no_bucket_configured_exits_2(gcp: Gcp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAXI_GCS_BUCKET")
    result = invoke("load-gcs", "green", "2020-04")
    assert result.exit_code == 2
    assert "no bucket" in result.stderr and "TAXI_GCS_BUCKET" in result.stderr


def test_emulator_down_exits_3_naming_it(gcp: Gcp, monkeypatch: pytest.MonkeyPatch) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", down)
    result = invoke("load-gcs", "green", "2020-04")
    assert result.exit_code == 3
    [line] = result.stderr.strip().splitlines()
    assert f"cannot reach {down}" in line


class _Denying(BaseHTTPRequestHandler):
    """A storage endpoint that refuses every caller, as GCS does without IAM rights."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        body = json.dumps(
            {
                "error": {
                    "code": 403,
                    "message": "caller does not have storage.buckets.get access",
                    "errors": [{"reason": "forbidden", "message": "no storage.buckets.get"}],
                }
            }
        ).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def denying_endpoint() -> Iterator[str]:
    with local_http(_Denying) as url:
        yield url


def test_access_denied_exits_3(
    gcp: Gcp, denying_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", denying_endpoint)
    result = invoke("load-gcs", "green", "2020-04")
    assert result.exit_code == 3
    [line] = result.stderr.strip().splitlines()
    assert "access denied (403" in line and "forbidden" in line


def test_bad_format_is_a_usage_error(gcp: Gcp) -> None:
    result = invoke("load-gcs", "green", "2020-04", "--format", "avro")
    assert result.exit_code == 2
    assert (
        "Invalid value for '--format'" in result.stderr and "'parquet', 'csv.gz'" in result.stderr
    )


def test_one_failed_month_of_several_exits_4_after_loading_the_others(
    gcp: Gcp, real_green: Path
) -> None:
    result = invoke("load-gcs", "green", "2020-04,2020-05", "--json")  # 2020-05: not served
    assert result.exit_code == 4
    assert [i["month"] for i in results(result.stdout)] == ["2020-04"]
    assert "1 of 2 partitions failed (first: green 2020-05 -> gcs" in result.stderr
    ledger = {r.month: r.status for r in gcs_ledger()}
    assert ledger == {"2020-04": "done", "2020-05": "failed"}


def test_the_gcs_destination_takes_a_verified_file(gcp: Gcp, real_green: Path) -> None:
    from taxi_cli import extract
    from taxi_cli.catalog import Partition
    from taxi_cli.choices import TargetName
    from taxi_cli.destinations import make
    from taxi_cli.plan import Action

    cfg = load_settings()
    source = extract.ensure_file(cfg, GREEN, "2020-04", parquet=True)
    (lake,) = make(cfg, TargetName.GCS)
    first = lake.load(Partition(GREEN, "2020-04"), source, Action.LOAD)
    again = lake.load(Partition(GREEN, "2020-04"), source, Action.LOAD)
    assert (first.action, again.action) == ("uploaded", "unchanged")
    assert first.where == f"gs://{gcp.bucket}/{PARQUET_NAME}"


def test_a_missing_credentials_file_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAXI_GCS_BUCKET", "some-bucket")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "nope.json"))
    result = invoke("load-gcs", "green", "2020-04")
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "nope.json" in line and "does not exist" in line


def test_an_unusable_credentials_file_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "key.json"
    key.write_text('{"type": "not_a_credential_type"}')
    monkeypatch.setenv("TAXI_GCS_BUCKET", "some-bucket")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    result = invoke("load-bq", "green", "2020-04")
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "no usable Google credentials" in line and "gcloud auth" in line


def test_a_service_account_key_without_a_valid_key_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "sa.json"
    key.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "p",
                "private_key": "not a key",
                "client_email": "loader@p.iam.gserviceaccount.com",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    monkeypatch.setenv("TAXI_GCS_BUCKET", "some-bucket")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    result = invoke("load-gcs", "green", "2020-04")
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert f"credentials file {key} is not usable" in line


def test_upload_is_a_resumable_session_with_progress_on_stderr(
    gcp: Gcp, real_green: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import io
    import logging

    from rich.console import Console

    from taxi_cli import extract
    from taxi_cli.console import Output
    from taxi_cli.gcp.gcs import Lake

    cfg = load_settings()
    source = extract.ensure_file(cfg, GREEN, "2020-04")
    err = io.StringIO()
    out = Output(err=Console(file=err, force_terminal=True, width=100))
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        lake = Lake(cfg, bucket=gcp.bucket, prefix="")
        done = lake.upload(source.path, CSV_NAME, fmt="csv.gz", source=source, out=out)
    assert done.action == "uploaded"
    requests_made = [r.getMessage() for r in caplog.records]
    assert any("uploadType=resumable" in m and '"POST' in m for m in requests_made)
    assert any('"PUT /upload/storage/v1/b/' in m for m in requests_made)  # the chunk
    assert f"upload {CSV_NAME}" in err.getvalue()


def test_all_skips_months_outside_each_release_window() -> None:
    """load-gcs/load-bq plan like extract and load-pg: `all 2020-01` is yellow and green."""
    from taxi_cli.catalog import select

    seen = [(p.taxi.name, p.month) for p in select("all", "2020-01")]
    assert seen == [("yellow", "2020-01"), ("green", "2020-01")]
