"""`status`: the month x taxi grid from a target's ledger, totals per year and taxi."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from taxi_cli.cli import app
from taxi_cli.config import load_settings
from taxi_cli.ledger import StateLedger

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
    return StateLedger(load_settings())


def _record_yellow_2020(ledger: StateLedger, target: str) -> None:
    for number, rows in enumerate(YELLOW_2020, start=1):
        month = f"2020-{number:02d}"
        ledger.record_done(target, "yellow", month, f"yellow_tripdata_{month}.csv", "a" * 64, rows)


def test_yellow_2020_total_is_the_homework_answer(ledger: StateLedger) -> None:
    _record_yellow_2020(ledger, "bq")
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
    text = runner.invoke(app, ["status", "--target", "bq"])
    assert text.exit_code == 0
    assert "24,648,499" in text.stdout and "6,405,008" in text.stdout


def test_grid_states_missing_cells_and_json_rows(ledger: StateLedger) -> None:
    ledger.record_done("gcs", "green", "2019-11", "green_tripdata_2019-11.csv", "b" * 64, 7)
    ledger.record_failed("gcs", "green", "2020-01", "green_tripdata_2020-01.csv", "HTTP 503")
    ledger.record_done("gcs", "yellow", "2020-02", "yellow_tripdata_2020-02.csv", "c" * 64, 5)
    ledger.record_done("gcs", "fhv", "2019-12", "fhv_tripdata_2019-12.csv", "d" * 64, 3)
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
        "file": "yellow_tripdata_2020-02.csv",
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


def test_empty_ledger_and_bad_target() -> None:
    result = runner.invoke(app, ["status", "--target", "gcs"])
    assert result.exit_code == 0
    assert "nothing recorded in the gcs ledger yet" in result.stdout
    result = runner.invoke(app, ["status", "--target", "gcs+bq"])
    assert result.exit_code == 2
    assert "Invalid value for '--target'" in result.stderr and "'pg', 'gcs', 'bq'" in result.stderr
