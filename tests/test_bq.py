"""`load-bq` against real protocol emulators (bqemulator + gcp-storage-emulator), real data."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from collections import Counter
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from typer.testing import CliRunner, Result

from taxi_cli import rowid
from taxi_cli.catalog import GREEN
from taxi_cli.cli import app
from taxi_cli.config import load_settings
from taxi_cli.gcp.bq_schema import std_type
from tests.conftest import SHARED_DATA
from tests.fixtures_gcp import Gcp, free_port
from tests.fixtures_mirror import Mirror

if TYPE_CHECKING:
    from taxi_cli.gcp.bq import TableLoad, Warehouse

pytestmark = pytest.mark.integration

REAL_GREEN = SHARED_DATA / "real" / "green_tripdata_2020-04.csv.gz"
GREEN_ROWS = 35_612
GREEN_2020_10_ROWS = 95_120
CSV_OBJECT = "green/green_tripdata_2020-04.csv.gz"
FILENAME = "green_tripdata_2020-04.csv"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def results(stdout: str) -> list[dict[str, Any]]:
    """What each partition's destination did, from a load command's --json summary."""
    return [p["result"] for p in json.loads(stdout)["partitions"] if p["result"]]


def warehouse(create: bool = False) -> Warehouse:
    from taxi_cli.gcp.bq import Warehouse

    return Warehouse(load_settings(), create_dataset=create)


@pytest.fixture
def real_green(mirror: Mirror) -> Path:
    return mirror.add_file(REAL_GREEN)


def python_row_ids(lines: list[list[str]] | None = None, path: Path = REAL_GREEN) -> Counter[str]:
    """unique_row_id of every row of the real file, as `taxi_cli.rowid` computes it."""
    with gzip.open(path, "rt", newline="") as fh:
        reader = csv.reader(fh)
        plan = rowid.hash_plan(GREEN, next(reader))
        return Counter(rowid.row_id(row, plan) for row in (lines or reader))


def count(gcp: Gcp, where: str = "TRUE") -> int:
    [(n,)] = gcp.query(f"SELECT COUNT(*) FROM {gcp.table('green_tripdata')} WHERE {where}")
    return int(n)


def bq_ledger(gcp: Gcp) -> list[tuple[object, ...]]:
    """The bq destination's ledger table, oldest first."""
    return gcp.query(
        "SELECT taxi, month, status, rows, file, source_sha256, job_id, error "
        f"FROM {gcp.table('taxi_cli_loads')} ORDER BY finished"
    )


@pytest.mark.parametrize(
    ("month", "rows"), [("2020-04", GREEN_ROWS), ("2020-10", GREEN_2020_10_ROWS)]
)
def test_real_month_loads_once_with_postgres_row_ids(
    gcp: Gcp, mirror: object, pg_url: str, month: str, rows: int
) -> None:
    source = SHARED_DATA / "real" / f"green_tripdata_{month}.csv.gz"
    mirror.add_file(source)  # type: ignore[attr-defined]
    filename = f"green_tripdata_{month}.csv"
    first = invoke("load-bq", "green", month, "--create-dataset", "--json")
    assert first.exit_code == 0, first.stderr
    [item] = results(first.stdout)
    assert item["rows"] == rows
    assert item["partition"] == f"{gcp.project}.{gcp.dataset}.green_tripdata${month[:4]}{month[5:]}"
    assert [j["step"] for j in item["jobs"]] == ["load", "count", "ledger"]
    assert all(j["job_id"] for j in item["jobs"])
    # Every job's bytes are reported (the emulator leaves a query's billed bytes unset;
    # real numbers: `make smoke-gcp`).
    assert all({"bytes_processed", "bytes_billed"} <= set(j) for j in item["jobs"])
    assert {"bytes_processed", "bytes_billed"} <= set(item)
    assert item["where"] == f"{gcp.project}.{gcp.dataset}.green_tripdata"
    assert count(gcp) == rows
    # It went through the lake: the Parquet object was uploaded first, described by its
    # metadata (the gcs record), and the ledger table holds the bq record.
    blob = gcp.storage().bucket(gcp.bucket).get_blob(f"green/green_tripdata_{month}.parquet")
    assert blob.metadata["taxi-cli-rows"] == str(rows)
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    assert blob.metadata["taxi-cli-source-sha256"] == sha
    [record] = bq_ledger(gcp)
    assert record[:6] == ("green", month, "done", rows, filename, sha)
    assert record[6] == item["job_id"]
    status = invoke("status", "--target", "bq", "--json")
    assert status.exit_code == 0, status.stderr
    [cell] = [p for p in json.loads(status.stdout)["partitions"] if p["month"] == month]
    assert (cell["state"], cell["rows"], cell["file"]) == ("done", rows, filename)

    skipped = invoke("load-bq", "green", month, "--json")
    assert skipped.exit_code == 0, skipped.stderr
    assert json.loads(skipped.stdout)["skipped"] == 1  # done from the same file
    rerun = invoke("load-bq", "green", month, "--force", "--json")
    assert rerun.exit_code == 0, rerun.stderr
    [again] = results(rerun.stdout)
    assert again["rows"] == rows and again["job_id"] != item["job_id"]
    assert count(gcp) == rows  # the earlier copy was replaced, not added to
    assert count(gcp, f"filename = '{filename}'") == rows
    assert [r[2] for r in bq_ledger(gcp)] == ["done", "done"]  # append-only

    # Every row id equals taxi_cli.rowid's, and PostgreSQL's for the same file.
    ids = gcp.query(f"SELECT unique_row_id FROM {gcp.table('green_tripdata')}")
    bq_ids = Counter(r[0] for r in ids)
    assert bq_ids == python_row_ids(path=source)
    assert sum(bq_ids.values()) == rows

    pg = invoke("load-pg", "green", month, "--pg-url", pg_url)
    assert pg.exit_code == 0, pg.stderr
    with psycopg.connect(pg_url) as conn:
        pg_ids = Counter(
            r[0]
            for r in conn.execute(
                "SELECT unique_row_id FROM public.green_tripdata WHERE filename = %s",
                (filename,),
            )
        )
    assert pg_ids == bq_ids
    if month == "2020-04":
        # A known row: the first of the file (2,2020-04-01 00:44:02,...,1.68,8).
        with psycopg.connect(pg_url) as conn:
            [(known,)] = conn.execute(
                "SELECT unique_row_id FROM public.green_tripdata WHERE vendorid = '2' AND "
                "lpep_pickup_datetime = '2020-04-01 00:44:02' AND pulocationid = '42'"
            ).fetchall()
        [(bq_known,)] = gcp.query(
            f"SELECT unique_row_id FROM {gcp.table('green_tripdata')} WHERE vendorid = 2 AND "
            "lpep_pickup_datetime = DATETIME '2020-04-01 00:44:02' AND pulocationid = 42"
        )
        assert bq_known == known

    # No staging table: the trip table and the ledger only.
    tables = [t.table_id for t in gcp.bigquery().list_tables(f"{gcp.project}.{gcp.dataset}")]
    assert sorted(tables) == ["green_tripdata", "taxi_cli_loads", "taxi_cli_runs"]


def test_main_table_schema_partitioning_and_clustering(gcp: Gcp, real_green: Path) -> None:
    result = invoke("load-bq", "green", "2020-04", "--create-dataset", "--format", "csv.gz")
    assert result.exit_code == 0, result.stderr
    table = gcp.bigquery().get_table(f"{gcp.project}.{gcp.dataset}.green_tripdata")
    fields = {f.name: std_type(f.field_type) for f in table.schema}
    assert list(fields)[:4] == ["unique_row_id", "filename", "file_month", "vendorid"]
    assert fields["file_month"] == "DATE"
    assert fields["vendorid"] == "INT64" and fields["pulocationid"] == "INT64"
    assert fields["passenger_count"] == "INT64"
    assert fields["fare_amount"] == "FLOAT64"
    assert fields["lpep_pickup_datetime"] == "DATETIME"
    assert table.time_partitioning.field == "file_month"
    assert table.time_partitioning.type_ == "MONTH"
    assert table.clustering_fields == ["lpep_pickup_datetime", "pulocationid"]
    assert gcp.query(f"SELECT DISTINCT file_month FROM {gcp.table('green_tripdata')}") == [
        (date(2020, 4, 1),)
    ]
    # The csv.gz path gives the same ids as the Parquet path.
    ids = gcp.query(f"SELECT unique_row_id FROM {gcp.table('green_tripdata')}")
    assert Counter(r[0] for r in ids) == python_row_ids()
    # Text report: the partition, its state and rows.
    assert "green 2020-04 -> bq" in result.stdout and f"{GREEN_ROWS:,}" in result.stdout


def _upload_csv(gcp: Gcp, rows: list[list[str]], declared_rows: int) -> None:
    """Put a hand-made csv.gz month in the lake, as taxi-cli would describe it."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\r\n").writerows([list(GREEN.header), *rows])
    blob = gcp.storage().bucket(gcp.bucket).blob(CSV_OBJECT)
    blob.metadata = {"taxi-cli-rows": str(declared_rows), "taxi-cli-source": FILENAME}
    blob.upload_from_string(gzip.compress(text.getvalue().encode()))


def _real_rows(n: int) -> list[list[str]]:
    with gzip.open(REAL_GREEN, "rt", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        return [row for _, row in zip(range(n), reader, strict=False)]


def _load_object(rows: int | None) -> TableLoad:
    from taxi_cli.catalog import GREEN as G

    wh = warehouse()
    uri = f"gs://{load_settings().gcs_bucket}/{CSV_OBJECT}"
    return wh.load_month(G, "2020-04", uri, fmt="csv.gz", filename=FILENAME, expected_rows=rows)


def test_a_smaller_file_replaces_the_earlier_rows_of_that_file(gcp: Gcp, real_green: Path) -> None:
    assert (
        invoke("load-bq", "green", "2020-04", "--create-dataset", "--format", "csv.gz").exit_code
        == 0
    )
    assert count(gcp) == GREEN_ROWS
    rows = _real_rows(1000)
    _upload_csv(gcp, rows, 1000)
    assert _load_object(1000).rows == 1000
    assert count(gcp) == 1000
    ids = gcp.query(f"SELECT unique_row_id FROM {gcp.table('green_tripdata')}")
    assert Counter(r[0] for r in ids) == python_row_ids(rows)


def test_row_count_mismatch_leaves_the_table_as_it_was(gcp: Gcp, real_green: Path) -> None:
    from taxi_cli.errors import DataError

    assert (
        invoke("load-bq", "green", "2020-04", "--create-dataset", "--format", "csv.gz").exit_code
        == 0
    )
    _upload_csv(gcp, _real_rows(50), declared_rows=GREEN_ROWS)  # e.g. a truncated object
    with pytest.raises(DataError) as info:
        _load_object(GREEN_ROWS)
    line = str(info.value)
    assert "\n" not in line
    assert "read 50 rows" in line and "35,612" in line and "was not changed" in line
    assert count(gcp) == GREEN_ROWS


def test_a_failed_load_job_is_one_line_with_its_job_id(gcp: Gcp, real_green: Path) -> None:
    from taxi_cli.errors import TaxiError

    row = _real_rows(1)[0]
    row[GREEN.header.index("passenger_count")] = "one"
    _upload_csv(gcp, [row], 1)
    warehouse(create=True)
    with pytest.raises(TaxiError) as info:
        _load_object(1)
    line = str(info.value)
    assert "\n" not in line and line.startswith("loading gs://")
    assert "BigQuery job taxi_cli_green_2020_04_stage_" in line


def test_zones(gcp: Gcp, mirror: Mirror) -> None:
    mirror.add_zones()
    result = invoke("load-bq", "zones", "--create-dataset", "--json")
    assert result.exit_code == 0, result.stderr
    assert results(result.stdout)[-1]["rows"] == 265
    table = gcp.bigquery().get_table(f"{gcp.project}.{gcp.dataset}.taxi_zone_lookup")
    assert [(f.name, std_type(f.field_type)) for f in table.schema] == [
        ("locationid", "INT64"),
        ("borough", "STRING"),
        ("zone", "STRING"),
        ("service_zone", "STRING"),
    ]
    [(n, zone)] = gcp.query(
        f"SELECT COUNT(*), MAX(IF(locationid = 1, zone, NULL)) FROM {gcp.table('taxi_zone_lookup')}"
    )
    assert (n, zone) == (265, "Newark Airport")
    again = invoke("load-bq", "zones", "--json")  # a rerun replaces, never appends
    assert again.exit_code == 0, again.stderr
    assert gcp.query(f"SELECT COUNT(*) FROM {gcp.table('taxi_zone_lookup')}") == [(265,)]


def test_missing_dataset_exits_2_naming_it(gcp: Gcp, real_green: Path) -> None:
    result = invoke("load-bq", "green", "2020-04")
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert f"{gcp.project}.{gcp.dataset} does not exist" in line and "--create-dataset" in line


def test_bigquery_endpoint_down_exits_3(gcp: Gcp, monkeypatch: pytest.MonkeyPatch) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("TAXI_BQ_ENDPOINT", down)
    result = invoke("load-bq", "green", "2020-04", "--create-dataset")
    assert result.exit_code == 3
    [line] = result.stderr.strip().splitlines()
    assert f"cannot reach {down}" in line


def test_bad_dataset_name_is_a_usage_error(gcp: Gcp) -> None:
    result = invoke("load-bq", "green", "2020-04", "--dataset", "bad-name")
    assert result.exit_code == 2
    assert "bad dataset name" in result.stderr


@pytest.mark.parametrize(
    ("taxi", "month"), [("yellow", "2021-01"), ("fhv", "2019-01"), ("fhvhv", "2021-06")]
)
def test_every_taxi_type_loads_with_python_row_ids(
    gcp: Gcp, mirror: Mirror, taxi: str, month: str
) -> None:
    from taxi_cli.catalog import TAXIS

    path = mirror.add_month(taxi, month, rows=300)
    result = invoke("load-bq", taxi, month, "--create-dataset", "--json", "-q")
    assert result.exit_code == 0, result.stderr
    assert results(result.stdout)[0]["rows"] == 300
    with gzip.open(path, "rt", newline="") as fh:
        reader = csv.reader(fh)
        plan = rowid.hash_plan(TAXIS[taxi], next(reader))
        want = Counter(rowid.row_id(row, plan) for row in reader)
    got = gcp.query(f"SELECT unique_row_id FROM {gcp.table(f'{taxi}_tripdata')}")
    assert Counter(r[0] for r in got) == want


def test_parallel_months_into_one_table_all_land_once(gcp: Gcp, mirror: Mirror) -> None:
    months = ["2020-01", "2020-02", "2020-03"]
    for i, month in enumerate(months):
        mirror.add_month("green", month, rows=100 + i)
    first = invoke("load-bq", "green", "2020-01..2020-03", "--create-dataset", "-j", "3", "--json")
    assert first.exit_code == 0, first.stderr
    # again, all at once, each replacing its own file's rows while the others do too
    again = invoke("load-bq", "green", "2020-01..2020-03", "--force", "-j", "3", "--json")
    assert again.exit_code == 0, again.stderr
    assert [r["rows"] for r in results(again.stdout)] == [100, 101, 102]
    got = gcp.query(
        f"SELECT filename, COUNT(*) FROM {gcp.table('green_tripdata')} GROUP BY 1 ORDER BY 1"
    )
    assert got == [(f"green_tripdata_{m}.csv", 100 + i) for i, m in enumerate(months)]
