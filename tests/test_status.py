"""`status`: the month x taxi grid from a target's ledger, totals per year and taxi.

The gcs and bq ledgers live in the destination (object metadata, the `taxi_cli_loads`
table), so these run against the emulators; records are written by taxi-cli's own code.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from taxi_cli.cli import app
from taxi_cli.config import load_settings
from taxi_cli.ledger import StateLedger
from tests.fixtures_gcp import Gcp

pytestmark = pytest.mark.integration
runner = CliRunner()

# The release files' row counts of yellow 2020 (reference section 7, a public answer file).
YELLOW_2020 = [
    6_405_008,
    6_299_354,
    3_007_292,
    237_993,
    348_371,
    549_760,
    800_412,
    1_007_284,
    1_341_012,
    1_681_131,
    1_508_985,
    1_461_897,
]
HOMEWORK_Q3 = 24_648_499  # "Yellow rows, all 2020 CSVs"


@pytest.fixture
def ledger() -> StateLedger:
    """The local record of failed gcs attempts (display only)."""
    return StateLedger(load_settings())


def _record_yellow_2020_in_bq() -> None:
    """Ledger rows as BqDestination writes them, into the dataset's taxi_cli_loads."""
    from taxi_cli.gcp.bq import Warehouse

    records = [
        {
            "file": f"yellow_tripdata_2020-{n:02d}.csv",
            "taxi": "yellow",
            "month": f"2020-{n:02d}",
            "status": "done",
            "source_sha256": "a" * 64,
            "rows": rows,
            "finished": datetime(2026, 1, 1, tzinfo=UTC),
        }
        for n, rows in enumerate(YELLOW_2020, start=1)
    ]
    Warehouse(load_settings(), create_dataset=True).append_ledger(records)


def _object(gcp: Gcp, taxi: str, month: str, rows: int, sha: str) -> None:
    """A lake object with the metadata taxi-cli's upload writes (its gcs record)."""
    blob = gcp.storage().bucket(gcp.bucket).blob(f"{taxi}/{taxi}_tripdata_{month}.parquet")
    blob.metadata = {
        "taxi-cli-source": f"{taxi}_tripdata_{month}.csv",
        "taxi-cli-source-sha256": sha,
        "taxi-cli-rows": str(rows),
        "taxi-cli-version": "test",
    }
    blob.upload_from_string(b"PAR1")


def test_yellow_2020_total_is_the_homework_answer(gcp: Gcp) -> None:
    _record_yellow_2020_in_bq()
    gcp.bq_requests.clear()
    result = runner.invoke(app, ["status", "--target", "bq", "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    (total,) = report["totals"]
    assert total == {
        "taxi": "yellow",
        "year": "2020",
        "rows": HOMEWORK_Q3,
        "done": 12,
        "failed": 0,
        "missing": 0,
    }
    assert report["total_rows"] == HOMEWORK_Q3
    # Read with tabledata.list (free; no query job, nothing created):
    # https://cloud.google.com/bigquery/docs/reference/rest/v2/tabledata/list
    sent = [(r.method, r.path) for r in gcp.bq_requests.recorded()]
    assert all(method == "GET" for method, _ in sent), sent
    assert any(path.endswith("/tables/taxi_cli_loads/data") for _, path in sent)
    text = runner.invoke(app, ["status", "--target", "bq"])
    assert text.exit_code == 0
    assert "24,648,499" in text.stdout and "6,405,008" in text.stdout


def test_status_of_a_missing_dataset_is_empty_and_creates_nothing(gcp: Gcp) -> None:
    result = runner.invoke(app, ["status", "--target", "bq"])
    assert result.exit_code == 0, result.stderr
    assert "nothing recorded in the bq ledger yet" in result.stdout
    assert {r.method for r in gcp.bq_requests.recorded()} == {"GET"}


def test_grid_states_missing_cells_and_json_rows(gcp: Gcp, ledger: StateLedger) -> None:
    _object(gcp, "green", "2019-11", 7, "b" * 64)
    ledger.record_failed("gcs", "green", "2020-01", "green_tripdata_2020-01.csv", "HTTP 503")
    _object(gcp, "yellow", "2020-02", 5, "c" * 64)
    _object(gcp, "fhv", "2019-12", 3, "d" * 64)
    result = runner.invoke(app, ["status", "--target", "gcs", "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    cells = {(p["taxi"], p["month"]): p for p in report["partitions"]}
    # months run from the first to the last recorded month, taxis in catalogue order
    assert sorted({m for _, m in cells}) == ["2019-11", "2019-12", "2020-01", "2020-02"]
    assert cells[("green", "2020-01")]["state"] == "failed"
    assert cells[("green", "2020-01")]["error"] == "HTTP 503"
    assert cells[("green", "2019-12")]["state"] == "missing"
    assert cells[("yellow", "2020-02")] | {"finished": None} == {
        "target": "gcs",
        "taxi": "yellow",
        "month": "2020-02",
        "state": "done",
        "rows": 5,
        "file": f"gs://{gcp.bucket}/yellow/yellow_tripdata_2020-02.parquet",
        "finished": None,
        "error": None,
    }
    assert cells[("yellow", "2020-02")]["finished"] is not None
    assert ("fhv", "2020-01") not in cells  # outside fhv's release window: no cell
    totals = {(t["taxi"], t["year"]): t for t in report["totals"]}
    assert totals[("green", "2020")] == {
        "taxi": "green",
        "year": "2020",
        "rows": 0,
        "done": 0,
        "failed": 1,
        "missing": 1,
    }
    assert report["total_rows"] == 7 + 5 + 3
    text = runner.invoke(app, ["status", "--target", "gcs"])
    assert "green 2020-01 failed: HTTP 503" in text.stdout
    assert "1 failed, 1 missing" in text.stdout


def test_empty_ledger_and_bad_target(gcp: Gcp) -> None:
    result = runner.invoke(app, ["status", "--target", "gcs"])
    assert result.exit_code == 0
    assert "nothing recorded in the gcs ledger yet" in result.stdout
    result = runner.invoke(app, ["status", "--target", "gcs+bq"])
    assert result.exit_code == 2
    assert "Invalid value for '--target'" in result.stderr and "'pg', 'gcs', 'bq'" in result.stderr
