"""`check --target gcs|bq` against the GCS and BigQuery emulators: what the bucket and the
dataset hold now (the rows in the object's Parquet footer, a COUNT per filename in
BigQuery) against the ledger; rows deleted from BigQuery, or a deleted object, are a
mismatch (exit 1)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from taxi_cli.cli import app
from tests.fixtures_gcp import Gcp
from tests.fixtures_mirror import Mirror

pytestmark = pytest.mark.integration
runner = CliRunner()
MONTHS = ("2021-01", "2021-02")  # green months without a published count: only the ledger


def _check(target: str) -> tuple[int, dict[str, dict[str, object]], str]:
    result = runner.invoke(app, ["check", "--target", target, "--json"])
    parts = {str(p["file"]): p for p in json.loads(result.stdout)["partitions"]}
    return result.exit_code, parts, result.stderr


def test_check_counts_objects_and_table_rows(mirror: Mirror, gcp: Gcp) -> None:
    gcp.bigquery().create_dataset(f"{gcp.project}.{gcp.dataset}")
    for index, month in enumerate(MONTHS):
        mirror.add_month("green", month, rows=70 + index)
    done = runner.invoke(app, ["backfill", "green", ",".join(MONTHS), "--target", "gcs+bq"])
    assert done.exit_code == 0, done.stderr
    jan, feb = (f"green_tripdata_{m}.csv" for m in MONTHS)
    objects = {m: f"gs://{gcp.bucket}/green/green_tripdata_{m}.parquet" for m in MONTHS}
    for target, (first, second) in {"gcs": objects.values(), "bq": (jan, feb)}.items():
        code, parts, err = _check(target)
        assert code == 0, err
        assert parts[first]["actual_rows"] == parts[first]["ledger_rows"] == 70
        assert parts[second]["actual_rows"] == 71

    gcp.query(f"DELETE FROM {gcp.table('green_tripdata')} WHERE filename = '{feb}'")
    code, parts, err = _check("bq")
    assert code == 1
    assert f"{feb}: 0 rows there now, the ledger recorded 71 (-71)" in err
    assert parts[jan]["ok"] is True and parts[feb]["ok"] is False

    bucket = gcp.storage().bucket(gcp.bucket)
    bucket.blob(f"green/green_tripdata_{MONTHS[0]}.parquet").delete()
    # the load record (under _taxi_cli/loads/) outlives the object: the month is a mismatch
    code, parts, err = _check("gcs")
    assert code == 1, err
    assert f"{objects[MONTHS[0]]}: 0 rows there now, the ledger recorded 70 (-70)" in err
    assert parts[objects[MONTHS[0]]]["ok"] is False and parts[objects[MONTHS[1]]]["ok"] is True
