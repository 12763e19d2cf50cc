"""The REST requests taxi-cli's official Google clients send, where emulators cannot show
real behaviour (partition decorators, the sandbox's refusal of DML, IAM, locations).

Every request goes through tests/recording_proxy.py; each assertion names the Google
documentation it relies on. The data itself is checked on the emulators too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from taxi_cli.cli import app
from tests.conftest import SHARED_DATA
from tests.fixtures_gcp import Gcp
from tests.fixtures_mirror import Mirror

pytestmark = pytest.mark.integration

REAL_GREEN = SHARED_DATA / "real" / "green_tripdata_2020-04.csv.gz"
GREEN_ROWS = 35_612
# DML statements: https://cloud.google.com/bigquery/docs/reference/standard-sql/dml-syntax
DML = re.compile(r"\b(INSERT|DELETE|MERGE|UPDATE|TRUNCATE)\b", re.I)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def real_green(mirror: Mirror) -> Path:
    return mirror.add_file(REAL_GREEN)


def _trip_jobs(gcp: Gcp, kind: str) -> list[dict[str, Any]]:
    return [
        job
        for job in gcp.bq_requests.jobs(kind)
        if "tripdata" in (job.get("destinationTable") or {}).get("tableId", "")
    ]


def test_a_parquet_month_is_one_load_job_into_its_partition_decorator(
    gcp: Gcp, real_green: Path
) -> None:
    result = invoke("load-bq", "green", "2020-04", "--create-dataset", "--json")
    assert result.exit_code == 0, result.stderr
    # One load job, from the lake object, into `table$YYYYMM` with WRITE_TRUNCATE: it
    # replaces that partition only, atomically ("write data to a specific partition",
    # https://cloud.google.com/bigquery/docs/load-data-partitioned-tables; decorator
    # format yyyymm for MONTH partitioning,
    # https://cloud.google.com/bigquery/docs/managing-partitioned-table-data).
    [load] = _trip_jobs(gcp, "load")
    assert load["destinationTable"]["tableId"] == "green_tripdata$202004"
    assert load["writeDisposition"] == "WRITE_TRUNCATE"
    assert load["createDisposition"] == "CREATE_NEVER"
    assert load["sourceFormat"] == "PARQUET"
    assert load["sourceUris"] == [f"gs://{gcp.bucket}/green/green_tripdata_2020-04.parquet"]
    names = [f["name"] for f in load["schema"]["fields"]]
    assert names[:3] == ["unique_row_id", "filename", "file_month"]
    # No staging table and no query writing the trip table: the object has the row ids.
    assert _trip_jobs(gcp, "query") == []
    created = {r.json["tableReference"]["tableId"] for r in _table_inserts(gcp)}
    assert created == {"green_tripdata", "taxi_cli_loads", "taxi_cli_runs"}
    _assert_no_dml(gcp)
    # Result in the emulator: the partition holds the month.
    [(n, month)] = gcp.query(f"SELECT COUNT(*), MIN(file_month) FROM {gcp.table('green_tripdata')}")
    assert n == GREEN_ROWS and str(month) == "2020-04-01"


def _table_inserts(gcp: Gcp) -> list[Any]:
    return [
        r
        for r in gcp.bq_requests.recorded()
        if r.method == "POST" and re.search(r"/datasets/[^/]+/tables$", r.path)
    ]


def _assert_no_dml(gcp: Gcp) -> None:
    """The sandbox refuses DML ("DML queries are not allowed in the free tier";
    https://cloud.google.com/bigquery/docs/sandbox#limitations): none is sent."""
    for query in gcp.bq_requests.jobs("query"):
        assert not DML.search(query["query"]), query["query"]


def test_the_trip_table_is_month_partitioned_on_file_month_and_clustered(
    gcp: Gcp, real_green: Path
) -> None:
    result = invoke("load-bq", "green", "2020-04", "--create-dataset")
    assert result.exit_code == 0, result.stderr
    [insert] = [
        r for r in _table_inserts(gcp) if r.json["tableReference"]["tableId"] == "green_tripdata"
    ]
    # https://cloud.google.com/bigquery/docs/reference/rest/v2/tables#TimePartitioning
    assert insert.json["timePartitioning"] == {"type": "MONTH", "field": "file_month"}
    # https://cloud.google.com/bigquery/docs/clustered-tables
    assert insert.json["clustering"] == {"fields": ["lpep_pickup_datetime", "pulocationid"]}


def test_a_csv_month_is_staged_then_one_select_writes_the_decorator(
    gcp: Gcp, real_green: Path
) -> None:
    result = invoke("load-bq", "green", "2020-04", "--create-dataset", "--format", "csv.gz")
    assert result.exit_code == 0, result.stderr
    [stage] = [
        j for j in gcp.bq_requests.jobs("load") if "_staging_" in j["destinationTable"]["tableId"]
    ]
    assert stage["sourceFormat"] == "CSV" and int(stage["skipLeadingRows"]) == 1
    # One query job whose result is written into the partition (a destination table
    # with a decorator, https://cloud.google.com/bigquery/docs/load-data-partitioned-tables
    # "write the results of a query to a specific partition"): not DML.
    [write] = _trip_jobs(gcp, "query")
    assert write["destinationTable"]["tableId"] == "green_tripdata$202004"
    assert write["writeDisposition"] == "WRITE_TRUNCATE"
    assert write["query"].lstrip().upper().startswith("SELECT")
    assert "DATE '2020-04-01' AS file_month" in write["query"]
    _assert_no_dml(gcp)
    assert gcp.query(f"SELECT COUNT(*) FROM {gcp.table('green_tripdata')}") == [(GREEN_ROWS,)]


def test_months_load_in_parallel_each_into_its_own_partition(gcp: Gcp, mirror: Mirror) -> None:
    months = ["2020-01", "2020-02", "2020-03"]
    for i, month in enumerate(months):
        mirror.add_month("green", month, rows=50 + i)
    first = invoke("load-bq", "green", "2020-01..2020-03", "--create-dataset", "-j", "3")
    assert first.exit_code == 0, first.stderr
    decorators = sorted(j["destinationTable"]["tableId"] for j in _trip_jobs(gcp, "load"))
    assert decorators == [f"green_tripdata${m.replace('-', '')}" for m in months]
    # Reloading one month leaves the others as they were.
    gcp.bq_requests.clear()
    again = invoke("load-bq", "green", "2020-02", "--force")
    assert again.exit_code == 0, again.stderr
    [load] = _trip_jobs(gcp, "load")
    assert load["destinationTable"]["tableId"] == "green_tripdata$202002"
    got = gcp.query(
        f"SELECT filename, COUNT(*) FROM {gcp.table('green_tripdata')} GROUP BY 1 ORDER BY 1"
    )
    assert got == [(f"green_tripdata_{m}.csv", 50 + i) for i, m in enumerate(months)]
    _assert_no_dml(gcp)


def test_reading_the_bq_ledger_creates_nothing(gcp: Gcp, mirror: Mirror) -> None:
    mirror.add_month("green", "2020-01", rows=10)
    plan = invoke("backfill", "green", "2020-01", "--target", "bq", "--dry-run", "--json")
    assert plan.exit_code == 0, plan.stderr
    assert [p["action"] for p in json.loads(plan.stdout)] == ["load"]
    # Only reads: no dataset, table or job was created to find out.
    assert {r.method for r in gcp.bq_requests.recorded()} == {"GET"}
    assert {r.method for r in gcp.gcs_requests.recorded()} <= {"GET"}


def _old_layout_table(gcp: Gcp) -> None:
    """`green_tripdata` as taxi-cli made it before file_month: DAY on pickup."""
    from google.cloud import bigquery

    from taxi_cli.catalog import GREEN

    client = gcp.bigquery()
    client.create_dataset(f"{gcp.project}.{gcp.dataset}", exists_ok=True)
    schema = [
        bigquery.SchemaField("unique_row_id", "STRING"),
        bigquery.SchemaField("filename", "STRING"),
    ] + [bigquery.SchemaField(c.sql_name, "STRING") for c in GREEN.columns]
    table = bigquery.Table(f"{gcp.project}.{gcp.dataset}.green_tripdata", schema=schema)
    table.time_partitioning = bigquery.TimePartitioning(
        type_=bigquery.TimePartitioningType.DAY, field="lpep_pickup_datetime"
    )
    client.create_table(table)
    client.query(
        f"INSERT INTO {gcp.table('green_tripdata')} (unique_row_id, filename) "
        "VALUES ('x', 'green_tripdata_2019-01.csv')"
    ).result()


def test_an_old_layout_table_is_refused_until_migrate_keeps_it_aside(
    gcp: Gcp, real_green: Path
) -> None:
    _old_layout_table(gcp)
    refused = invoke("load-bq", "green", "2020-04")
    assert refused.exit_code == 2, refused.stderr
    line = refused.stderr.strip().splitlines()[-1]  # the error, one line
    assert line.startswith("taxi-cli: error: table "), refused.stderr
    assert "old layout" in line and "--migrate" in line and "nothing was changed" in line
    assert gcp.query(f"SELECT COUNT(*) FROM {gcp.table('green_tripdata')}") == [(1,)]

    migrated = invoke("load-bq", "green", "2020-04", "--migrate")
    assert migrated.exit_code == 0, migrated.stderr
    tables = {t.table_id for t in gcp.bigquery().list_tables(f"{gcp.project}.{gcp.dataset}")}
    [backup] = [t for t in tables if t.startswith("green_tripdata_old_layout_")]
    assert gcp.query(f"SELECT filename FROM {gcp.table(backup)}") == [
        ("green_tripdata_2019-01.csv",)
    ]  # nothing dropped: the old rows are kept under the new name
    table = gcp.bigquery().get_table(f"{gcp.project}.{gcp.dataset}.green_tripdata")
    assert table.time_partitioning.field == "file_month"
    assert gcp.query(f"SELECT COUNT(*) FROM {gcp.table('green_tripdata')}") == [(GREEN_ROWS,)]
    # The backup is a copy job (free, atomic), not a query.
    [copy] = gcp.bq_requests.jobs("copy")
    assert copy["destinationTable"]["tableId"] == backup


def test_a_dataset_elsewhere_than_location_exits_2_naming_both(gcp: Gcp, real_green: Path) -> None:
    from google.cloud import bigquery

    ds = bigquery.Dataset(f"{gcp.project}.{gcp.dataset}")
    ds.location = "EU"
    gcp.bigquery().create_dataset(ds)
    result = invoke("load-bq", "green", "2020-04", "--location", "US")
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "is in EU" in line and "says US" in line and "--location EU" in line


def test_a_bucket_elsewhere_than_the_dataset_exits_2_naming_both(
    gcp: Gcp, real_green: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "the Cloud Storage bucket must be in the same region or contained in the same
    multi-region as the dataset" unless the dataset is in US
    (https://cloud.google.com/bigquery/docs/batch-loading-data#data-locations)."""
    from google.cloud import bigquery

    ds = bigquery.Dataset(f"{gcp.project}.{gcp.dataset}")
    ds.location = "asia-northeast1"
    gcp.bigquery().create_dataset(ds)
    bucket = gcp.bucket + "-eu"
    made = gcp.storage().create_bucket(bucket)
    made._patch_property("location", "EU")  # the emulator ignores a location on insert
    made.patch()
    monkeypatch.setenv("TAXI_GCS_CHECK_LOCATION", "1")
    result = invoke("backfill", "green", "2020-04", "--target", "gcs+bq", "--bucket", bucket)
    assert result.exit_code == 2
    line = result.stderr.strip().splitlines()[-1]  # the error, one line
    assert line.startswith("taxi-cli: error: bucket "), result.stderr
    assert f"gs://{bucket} is in EU" in line and "is in asia-northeast1" in line


def test_create_bucket_creates_it_in_the_datasets_location(gcp: Gcp, real_green: Path) -> None:
    from google.cloud import bigquery

    ds = bigquery.Dataset(f"{gcp.project}.{gcp.dataset}")
    ds.location = "EU"
    gcp.bigquery().create_dataset(ds)
    bucket = gcp.bucket + "-new"
    result = invoke(
        "backfill", "green", "2020-04", "--target", "gcs+bq", "--bucket", bucket, "--create-bucket"
    )
    assert result.exit_code == 0, result.stderr
    [create] = [
        r for r in gcp.gcs_requests.recorded() if (r.method, r.path) == ("POST", "/storage/v1/b")
    ]
    # https://cloud.google.com/storage/docs/json_api/v1/buckets/insert: `location` in the
    # body (gcp-storage-emulator then reports US regardless: the request is the proof).
    assert create.json["location"] == "EU"


def test_smoke_gcp_without_a_project_says_what_it_needs_and_exits_2() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "tests.smoke_gcp"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
    )
    assert done.returncode == 2, done.stderr
    assert "TAXI_GCP_PROJECT" in done.stderr and "TAXI_GCS_BUCKET" in done.stderr
    assert "credentials" in done.stderr


def test_a_load_job_failing_with_a_retryable_reason_runs_again(
    gcp: Gcp, real_green: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`backendError` is retryable ("retry the request",
    https://cloud.google.com/bigquery/docs/error-messages): a new job, same partition."""
    monkeypatch.setenv("TAXI_HTTP_BACKOFF", "0")
    gcp.bq_requests.fail_next("load", "backendError")
    result = invoke("load-bq", "green", "2020-04", "--create-dataset", "--json")
    assert result.exit_code == 0, result.stderr
    assert "backendError" in result.stderr and "retrying" in result.stderr
    inserts = [
        r.json["jobReference"]["jobId"]
        for r in gcp.bq_requests.recorded()
        if "load" in r.job and "tripdata" in r.job["load"]["destinationTable"]["tableId"]
    ]
    assert len(inserts) == 2 and len(set(inserts)) == 2
    assert gcp.query(f"SELECT COUNT(*) FROM {gcp.table('green_tripdata')}") == [(GREEN_ROWS,)]


def test_a_job_failing_with_invalid_data_is_not_retried(
    gcp: Gcp, real_green: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAXI_HTTP_BACKOFF", "0")
    gcp.bq_requests.fail_next("load", "invalid")
    result = invoke("load-bq", "green", "2020-04", "--create-dataset", "--json")
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert "BigQuery job taxi_cli_green_2020_04_load_" in line and "invalid: injected" in line
    loads = [j for j in _trip_jobs(gcp, "load")]
    assert len(loads) == 1
    [(_, _, status, *_)] = gcp.query(
        f"SELECT taxi, month, status FROM {gcp.table('taxi_cli_loads')}"
    )
    assert status == "failed"  # the failure is in the destination's ledger too
