"""`backfill --target gcs|bq|gcs+bq` against the GCS and BigQuery emulators and the mirror."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from taxi_cli.catalog import month_range
from taxi_cli.cli import app
from taxi_cli.config import load_settings
from taxi_cli.ledger import StateLedger
from tests.fixtures_gcp import Gcp
from tests.fixtures_mirror import Mirror, rel_path

pytestmark = pytest.mark.integration

runner = CliRunner()
MONTHS = month_range("2020-01", "2020-03")


@pytest.fixture
def dataset(gcp: Gcp) -> Gcp:
    gcp.bigquery().create_dataset(f"{gcp.project}.{gcp.dataset}")
    return gcp


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
    names = sorted(b.name for b in bucket.list_blobs())
    assert names == [f"green/green_tripdata_{m}.parquet" for m in MONTHS]
    assert _rows_in_bq(dataset) == {f"green_tripdata_{m}.csv": 60 + i for i, m in enumerate(MONTHS)}
    ledger = StateLedger(load_settings())
    for target in ("gcs", "bq"):
        rows = ledger.rows(target)
        assert [(r.month, r.status, r.rows) for r in rows] == [
            (m, "done", 60 + i) for i, m in enumerate(MONTHS)
        ]

    mirror.clear_log()
    again = runner.invoke(
        app, ["backfill", "green", "2020-01..2020-03", "--target", "gcs+bq", "--json"]
    )
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["skipped"] == 6
    assert mirror.gets() == []  # only HEADs: has a month changed upstream?
    status = runner.invoke(app, ["status", "--target", "bq", "--json"])
    assert json.loads(status.stdout)["total_rows"] == 60 + 61 + 62


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
    ledger = StateLedger(load_settings())
    failed = ledger.get("gcs", "green", "2020-02")
    assert failed is not None and failed.status == "failed"
    assert failed.file == f"gs://{dataset.bucket}/green/green_tripdata_2020-02.parquet"
    assert _rows_in_bq(dataset) == {
        "green_tripdata_2020-01.csv": 40,
        "green_tripdata_2020-03.csv": 40,
    }
