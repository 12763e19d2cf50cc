"""`backfill --target gcs|bq|gcs+bq` against the GCS and BigQuery emulators and the mirror."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taxi_cli.catalog import month_range
from taxi_cli.choices import TargetName
from taxi_cli.cli import app
from taxi_cli.config import load_settings
from taxi_cli.destinations import make
from taxi_cli.model import LedgerRow
from tests.fixtures_gcp import Gcp
from tests.fixtures_mirror import Mirror, rel_path

pytestmark = pytest.mark.integration

runner = CliRunner()
MONTHS = month_range("2020-01", "2020-03")


@pytest.fixture
def dataset(gcp: Gcp) -> Gcp:
    gcp.bigquery().create_dataset(f"{gcp.project}.{gcp.dataset}")
    return gcp


def _ledgers() -> dict[str, list[LedgerRow]]:
    """Both destinations' ledgers, as planning reads them (from the bucket and dataset)."""
    made = make(load_settings(), TargetName.GCS_BQ, reading=True)
    return {d.name: list(d.ledger(read_only=True)) for d in made}


def _rows_in_bq(gcp: Gcp) -> dict[str, int]:
    found = gcp.query(
        f"SELECT filename, count(*) FROM {gcp.table('green_tripdata')} GROUP BY filename"
    )
    return {str(name): int(count) for name, count in found}


def test_gcs_and_bq_backfill_then_rerun_skips(mirror: Mirror, dataset: Gcp) -> None:
    for index, month in enumerate(MONTHS):
        mirror.add_month("green", month, rows=60 + index)
    result = runner.invoke(
        app, ["backfill", "green", "2020-01..2020-03", "--target", "gcs+bq", "--json"]
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["done"] == 6 and summary["failed"] == 0
    assert [(p["month"], p["target"]) for p in summary["partitions"]] == [
        (m, t) for m in MONTHS for t in ("gcs", "bq")
    ]
    bucket = dataset.storage().bucket(dataset.bucket)
    names = sorted(b.name for b in bucket.list_blobs() if not b.name.startswith("_taxi_cli/"))
    assert names == [f"green/green_tripdata_{m}.parquet" for m in MONTHS]
    assert _rows_in_bq(dataset) == {f"green_tripdata_{m}.csv": 60 + i for i, m in enumerate(MONTHS)}
    ledgers = _ledgers()
    for target in ("gcs", "bq"):
        assert [(r.month, r.status, r.rows) for r in ledgers[target]] == [
            (m, "done", 60 + i) for i, m in enumerate(MONTHS)
        ]

    # The state lives in the bucket and the dataset: a machine without the state dir
    # (another laptop, a fresh Cloud Run task) skips what is done and downloads nothing.
    shutil.rmtree(os.environ["TAXI_STATE_DIR"], ignore_errors=True)
    mirror.clear_log()
    again = runner.invoke(
        app, ["backfill", "green", "2020-01..2020-03", "--target", "gcs+bq", "--json"]
    )
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["skipped"] == 6
    assert mirror.gets() == []  # only HEADs: has a month changed upstream?
    shutil.rmtree(os.environ["TAXI_STATE_DIR"], ignore_errors=True)
    status = runner.invoke(app, ["status", "--target", "bq", "--json"])
    assert json.loads(status.stdout)["total_rows"] == 60 + 61 + 62
    # --catch-up reads the same state: it starts after 2020-03 (HEAD 2020-04: not there).
    mirror.clear_log()
    caught = runner.invoke(
        app, ["backfill", "green", "--catch-up", "--target", "gcs+bq", "--dry-run", "--json"]
    )
    assert caught.exit_code == 0, caught.stderr
    assert json.loads(caught.stdout) == []
    heads = sorted(r.path for r in mirror.requests(method="HEAD"))
    # the probe of 2020-04, and the done months' versions (has one changed upstream?)
    assert heads == [rel_path("green", m) for m in ("2020-01", "2020-02", "2020-03", "2020-04")]


def test_without_keep_cache_each_month_leaves_no_file_behind(
    mirror: Mirror, dataset: Gcp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAXI_KEEP_CACHE", "0")
    for month in MONTHS:
        mirror.add_month("green", month, rows=30)
    result = runner.invoke(
        app, ["backfill", "green", "2020-01..2020-03", "--target", "gcs+bq", "--json"]
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["done"] == 6
    left = [p for p in Path(os.environ["TAXI_DATA_DIR"]).rglob("*") if p.is_file()]
    assert [p.name for p in left if p.parent.name != ".locks"] == []  # locks are empty files
    mirror.clear_log()
    again = runner.invoke(
        app, ["backfill", "green", "2020-01..2020-03", "--target", "gcs+bq", "--json"]
    )
    assert json.loads(again.stdout)["skipped"] == 6  # the ledgers say done: no download
    assert mirror.gets() == []  # (a HEAD per month asks whether it changed upstream)


def test_keep_cache_is_the_default_off_cloud_run(
    mirror: Mirror, dataset: Gcp, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror.add_month("green", "2020-01", rows=30)
    result = runner.invoke(app, ["backfill", "green", "2020-01", "--target", "gcs"])
    assert result.exit_code == 0, result.stderr
    names = sorted(p.name for p in Path(os.environ["TAXI_DATA_DIR"]).rglob("*") if p.is_file())
    assert "green_tripdata_2020-01.csv.gz" in names and "green_tripdata_2020-01.parquet" in names
    monkeypatch.setenv("CLOUD_RUN_JOB", "taxi-backfill")  # what Cloud Run jobs set
    assert load_settings().keep_cache is False
    monkeypatch.setenv("TAXI_KEEP_CACHE", "1")
    assert load_settings().keep_cache is True


def test_failed_month_is_recorded_in_both_ledgers_and_exits_4(mirror: Mirror, dataset: Gcp) -> None:
    for month in MONTHS:
        mirror.add_month("green", month, rows=40)
    mirror.serve_html(rel_path("green", "2020-02"))
    result = runner.invoke(
        app, ["backfill", "green", "2020-01..2020-03", "--target", "gcs+bq", "--json"]
    )
    assert result.exit_code == 4, result.stderr
    states = {(p["month"], p["target"]): p for p in json.loads(result.stdout)["partitions"]}
    assert states[("2020-02", "gcs")]["state"] == "failed"
    assert states[("2020-02", "bq")]["state"] == "failed"
    # The download failed: both targets carry its error (one line, naming the file).
    assert states[("2020-02", "bq")]["error"] == states[("2020-02", "gcs")]["error"]
    assert states[("2020-02", "bq")]["error"].startswith("green_tripdata_2020-02.csv.gz: ")
    assert {states[(m, t)]["state"] for m in ("2020-01", "2020-03") for t in ("gcs", "bq")} == {
        "done"
    }
    ledgers = _ledgers()
    [failed] = [r for r in ledgers["gcs"] if r.month == "2020-02"]
    assert failed.status == "failed"
    assert failed.file == f"gs://{dataset.bucket}/green/green_tripdata_2020-02.parquet"
    [bq_failed] = [r for r in ledgers["bq"] if r.month == "2020-02"]
    assert bq_failed.status == "failed" and (bq_failed.error or "").startswith(
        "green_tripdata_2020-02"
    )
    assert _rows_in_bq(dataset) == {
        "green_tripdata_2020-01.csv": 40,
        "green_tripdata_2020-03.csv": 40,
    }
