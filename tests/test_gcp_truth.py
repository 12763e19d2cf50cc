"""Issue 13 for gcs and bq, on the emulators: the data checks recorded in their ledgers
(counted locally; `--checks fail` commits nothing), the gcs load records that outlive
their objects (a deleted or replaced object fails `check`), the upstream version
(size, ETag, Last-Modified), run histories, and `report` for both on real months."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from taxi_cli.catalog import GREEN
from taxi_cli.cli import app
from tests.fixtures_gcp import Gcp
from tests.fixtures_mirror import Mirror, rel_path
from tests.pg_helpers import GREEN_04, GREEN_10
from tests.test_report_pg import _chromium

pytestmark = pytest.mark.integration
runner = CliRunner()
MONTH = "2021-03"  # no published count of green 2021-03: only the ledger and the checks
FILE = f"green_tripdata_{MONTH}.csv"

# pg's hand-made rows (tests/test_data_checks_pg.py) in 2021-03, one suspicion each
ROW = "2,{p},{d},N,1,{pu},{do},{pc},.86,{fare},0.5,0.5,0,0,,0.3,{total},2,1,"
OK = {"p": "2021-03-01 00:10:16", "d": "2021-03-01 00:16:32", "pu": "97", "do": "49"}
OK |= {"pc": "2", "fare": "6", "total": "7.3"}
ROWS = [
    OK,
    OK | {"p": "2008-12-31 23:59:59", "d": "2009-01-01 00:05:00"},  # outside: before
    OK | {"p": "2021-04-01 00:00:00", "d": "2021-04-01 00:09:00"},  # outside: the next month
    OK | {"p": "2021-03-31 23:59:59", "d": "2021-04-01 00:09:00"},  # inside (last second)
    OK | {"p": "2021-03-02 10:00:00", "d": "2021-03-02 09:59:00"},  # dropoff before pickup
    OK | {"fare": "-3", "total": "-3.8"},  # negative fare and total: one row
    OK | {"total": "-0.3"},  # negative total only
    OK | {"pc": ""},  # no passenger count
    OK | {"pu": "999"},  # no such zone
    OK | {"do": "0"},  # no such zone either
    OK | {"pu": "264", "do": "265"},  # the lookup's Unknown zones are known ids
    # typed, as BigQuery holds it, "097" is the id 97 (pg keeps the text: unknown there)
    OK | {"pu": "097"},
]
EXPECTED = {
    "outside_month": 2,
    "dropoff_before_pickup": 1,
    "negative_amounts": 2,
    "null_passenger_count": 1,
    "unknown_zones": 2,
}


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def _bad_month() -> bytes:
    lines = [",".join(GREEN.header)] + [ROW.format(**row) for row in ROWS]
    return gzip.compress(("\r\n".join(lines) + "\r\n").encode(), mtime=0)


def _check(target: str, *args: str) -> tuple[int, dict[str, dict[str, Any]], str]:
    result = invoke("check", "--target", target, "--json", *args)
    parts = {str(p["file"]): p for p in json.loads(result.stdout)["partitions"]}
    return result.exit_code, parts, result.stderr


def _records(gcp: Gcp, under: str) -> list[dict[str, Any]]:
    bucket = gcp.storage().bucket(gcp.bucket)
    found = []
    for blob in bucket.list_blobs(prefix=f"_taxi_cli/{under}"):
        data = json.loads(blob.download_as_bytes())
        assert json.loads(blob.metadata["taxi-cli-record"]) == data  # a listing has it all
        found.append(data)
    return found


def _uri(gcp: Gcp, month: str, fmt: str = "parquet") -> str:
    return f"gs://{gcp.bucket}/green/green_tripdata_{month}.{fmt}"


# ---- 1. data checks --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv.gz"])
def test_gcs_counts_the_checks_before_the_upload_and_records_them(
    gcp: Gcp, mirror: Mirror, fmt: str
) -> None:
    mirror.add_bytes(rel_path("green", MONTH), _bad_month())
    result = invoke("load-gcs", "green", MONTH, "--format", fmt)
    assert result.exit_code == 0, result.stderr
    blob = gcp.storage().bucket(gcp.bucket).get_blob(f"green/green_tripdata_{MONTH}.{fmt}")
    assert json.loads(blob.metadata["taxi-cli-checks"])["counts"] == EXPECTED
    [record] = _records(gcp, "loads/")
    assert record["checks"]["counts"] == EXPECTED and record["checks"]["rows"] == len(ROWS)
    assert (record["rows"], record["source_rows"], record["quarantined"]) == (12, 12, 0)
    assert record["generation"] == blob.generation and record["md5"] == blob.md5_hash
    # the release asset's version as the mirror served it (HEAD/GET headers)
    upstream = record["upstream"]
    assert upstream["size"] == len(_bad_month())
    assert upstream["etag"].startswith('"') and upstream["last_modified"].endswith("GMT")

    code, parts, err = _check("gcs")
    assert code == 0, err  # a breach is a warning under --checks warn
    line = parts[_uri(gcp, MONTH, fmt)]
    assert line["checks"]["counts"] == EXPECTED
    assert (
        f"{_uri(gcp, MONTH, fmt)}: dropoff before pickup: 1 (8.33%, limit 1.00%)"
        in (line["warnings"])
    )
    assert line["actual_rows"] == line["ledger_rows"] == line["source_rows"] == 12
    code, parts, err = _check("gcs", "--checks", "fail")
    assert code == 1 and "dropoff before pickup" in err


def test_bq_records_the_checks_and_the_whole_upstream_version(gcp: Gcp, mirror: Mirror) -> None:
    mirror.add_bytes(rel_path("green", MONTH), _bad_month())
    result = invoke("load-bq", "green", MONTH, "--create-dataset")
    assert result.exit_code == 0, result.stderr
    [(checks, source_rows, quarantined, size, etag, modified)] = gcp.query(
        "SELECT checks, source_rows, quarantined, upstream_size, upstream_etag, "
        f"upstream_modified FROM {gcp.table('taxi_cli_loads')}"
    )
    assert json.loads(checks)["counts"] == EXPECTED
    assert (source_rows, quarantined, size) == (12, 0, len(_bad_month()))
    assert etag.startswith('"') and modified.endswith("GMT")
    code, parts, err = _check("bq")
    assert code == 0, err
    assert parts[FILE]["checks"]["counts"] == EXPECTED
    assert parts[FILE]["actual_rows"] == parts[FILE]["source_rows"] == 12
    assert any("unknown pickup or dropoff zone id: 2" in w for w in parts[FILE]["warnings"])


def test_checks_fail_commits_nothing_and_drift_reloads_the_month(gcp: Gcp, mirror: Mirror) -> None:
    """A month re-published upstream with bad rows: `--reprocess changed --checks fail`
    refuses it before the object is replaced or the partition truncated; `warn` loads
    it. The drift is found from the upstream version in the gcs and bq ledgers."""
    mirror.add_month("green", MONTH, rows=50)
    first = invoke("backfill", "green", MONTH, "--target", "gcs+bq", "--create-dataset")
    assert first.exit_code == 0, first.stderr
    bucket = gcp.storage().bucket(gcp.bucket)
    name = f"green/green_tripdata_{MONTH}.parquet"
    generation = bucket.get_blob(name).generation

    mirror.add_bytes(rel_path("green", MONTH), _bad_month())  # re-published: other bytes
    refused = invoke(
        "backfill", "green", MONTH, "--target", "gcs+bq", "--reprocess", "changed",
        "--checks", "fail", "--json",
    )  # fmt: skip
    assert refused.exit_code != 0
    # drift, from each ledger's upstream version: both destinations planned a reload
    plan = json.loads(refused.stdout)["partitions"]
    assert {p["target"]: p["reason"].split(" (")[0] for p in plan} == {
        "gcs": "changed upstream",
        "bq": "changed upstream",
    }
    assert f"{FILE}: data checks failed (" in refused.stderr
    assert "nothing of it was committed" in refused.stderr
    assert bucket.get_blob(name).generation == generation  # the object was not replaced
    rows = f"SELECT COUNT(*) FROM {gcp.table('green_tripdata')}"
    assert gcp.query(rows) == [(50,)]  # nor the partition truncated
    code, parts, err = _check("gcs")
    assert code == 0, err  # what is there still agrees with its record
    assert parts[_uri(gcp, MONTH)]["actual_rows"] == 50

    # (bq's last attempt failed: `changed` leaves it to `failed`; reload both)
    loaded = invoke("backfill", "green", MONTH, "--target", "gcs+bq", "--reprocess", "completed")
    assert loaded.exit_code == 0, loaded.stderr
    assert bucket.get_blob(name).generation != generation
    assert gcp.query(rows) == [(12,)]
    for target, file in (("gcs", _uri(gcp, MONTH)), ("bq", FILE)):
        code, parts, err = _check(target)
        assert code == 0, err
        assert parts[file]["checks"]["counts"] == EXPECTED


# ---- 2. the gcs ledger of record ----------------------------------------------------------


def test_a_deleted_or_replaced_object_fails_check_until_it_is_reloaded(
    gcp: Gcp, mirror: Mirror, tmp_path: Path
) -> None:
    months = ("2021-01", "2021-02")
    for month in months:
        mirror.add_month("green", month, rows=40)
    done = invoke("backfill", "green", ",".join(months), "--target", "gcs")
    assert done.exit_code == 0, done.stderr
    code, _, err = _check("gcs")
    assert code == 0, err
    bucket = gcp.storage().bucket(gcp.bucket)
    jan, feb = (_uri(gcp, m) for m in months)

    bucket.blob("green/green_tripdata_2021-01.parquet").delete()
    code, parts, err = _check("gcs")
    assert code == 1
    assert f"{jan}: the object is gone (deleted since the load recorded generation" in (
        " ".join(parts[jan]["problems"])
    )
    assert jan in err and parts[feb]["ok"] is True
    # planning sees it missing: the next backfill loads it again (and only it)
    plan = json.loads(
        invoke(
            "backfill", "green", ",".join(months), "--target", "gcs", "--dry-run", "--json"
        ).stdout
    )
    actions = {p["month"]: p["action"] for p in plan}
    assert actions == {"2021-01": "load", "2021-02": "skip"}
    again = invoke("backfill", "green", ",".join(months), "--target", "gcs")
    assert again.exit_code == 0, again.stderr
    code, parts, err = _check("gcs")
    assert code == 0, err
    assert parts[jan]["actual_rows"] == 40

    # replaced behind taxi-cli's back, same name: another generation than recorded
    other = tmp_path / "other.parquet"
    other.write_bytes(bucket.get_blob("green/green_tripdata_2021-01.parquet").download_as_bytes())
    bucket.blob("green/green_tripdata_2021-02.parquet").upload_from_filename(str(other))
    code, parts, err = _check("gcs")
    assert code == 1
    problems = " ".join(parts[feb]["problems"])
    assert f"{feb}: the object was replaced since its load (generation" in problems
    assert feb in err
    fixed = invoke("backfill", "green", "2021-02", "--target", "gcs", "--reprocess", "completed")
    assert fixed.exit_code == 0, fixed.stderr
    code, _, err = _check("gcs")
    assert code == 0, err


def test_an_object_without_its_record_is_a_warning_until_a_load_records_it(
    gcp: Gcp, mirror: Mirror
) -> None:
    """A load that stopped between its object and its record (or an object from before
    records): planning goes by the object, `check` warns, and the next load of the month
    records it, even when the object is already identical ("unchanged")."""
    mirror.add_month("green", MONTH, rows=30)
    done = invoke("load-gcs", "green", MONTH)
    assert done.exit_code == 0, done.stderr
    bucket = gcp.storage().bucket(gcp.bucket)
    for blob in bucket.list_blobs(prefix="_taxi_cli/loads/"):
        blob.delete()
    uri = _uri(gcp, MONTH)
    code, parts, err = _check("gcs")
    assert code == 0, err
    assert parts[uri]["actual_rows"] == 30  # still counted in the footer
    assert any("no load record for generation" in w for w in parts[uri]["warnings"])
    plan = json.loads(
        invoke("backfill", "green", MONTH, "--target", "gcs", "--dry-run", "--json").stdout
    )
    assert [p["action"] for p in plan] == ["skip"]

    again = invoke("load-gcs", "green", MONTH, "--force", "--json")
    assert again.exit_code == 0, again.stderr
    assert "unchanged" in again.stdout
    [record] = _records(gcp, "loads/")
    assert record["action"] == "unchanged" and record["rows"] == 30
    code, parts, err = _check("gcs")
    assert code == 0, err
    assert parts[uri]["warnings"] == []


def test_a_csv_gz_object_is_vouched_for_by_its_checksums(gcp: Gcp, mirror: Mirror) -> None:
    mirror.add_month("green", MONTH, rows=30)
    done = invoke("load-gcs", "green", MONTH, "--format", "csv.gz")
    assert done.exit_code == 0, done.stderr
    uri = _uri(gcp, MONTH, "csv.gz")
    code, parts, err = _check("gcs")
    assert code == 0, err
    assert parts[uri]["actual_rows"] == 30
    blob = gcp.storage().bucket(gcp.bucket).blob(f"green/green_tripdata_{MONTH}.csv.gz")
    blob.upload_from_string(gzip.compress(b"not the release\n"))
    code, parts, err = _check("gcs")
    assert code == 1
    assert f"{uri}: the object was replaced since its load" in " ".join(parts[uri]["problems"])


def test_the_record_writes_are_create_only_requests(gcp: Gcp, mirror: Mirror) -> None:
    """Records are written with `ifGenerationMatch=0` ("the object must not exist",
    https://cloud.google.com/storage/docs/request-preconditions): never over another."""
    mirror.add_month("green", MONTH, rows=20)
    done = invoke("load-gcs", "green", MONTH)
    assert done.exit_code == 0, done.stderr
    uploads = [
        r
        for r in gcp.gcs_requests.recorded()
        if r.method == "POST" and r.path.startswith(f"/upload/storage/v1/b/{gcp.bucket}/o")
        and b"_taxi_cli/" in r.body
    ]  # fmt: skip
    assert len(uploads) == 2  # the load record, the run record
    for request in uploads:
        assert request.query["ifGenerationMatch"] == ["0"]
        assert request.query["uploadType"] == ["multipart"]
        assert b'"taxi-cli-record"' in request.body  # the JSON is the metadata as well
    # the footer read of `check` is ranged, not a download of the object
    gcp.gcs_requests.clear()
    code, _, err = _check("gcs")
    assert code == 0, err
    media = [r for r in gcp.gcs_requests.recorded() if r.query.get("alt") == ["media"]]
    assert media and all(r.path.endswith(".parquet") for r in media)


# ---- 3. run histories -------------------------------------------------------------------


def _jobs_uploaded(gcp: Gcp) -> list[dict[str, Any]]:
    """The job resources of `load_table_from_json` (a multipart upload to /upload/...)."""
    found = []
    for r in gcp.bq_requests.recorded():
        if r.method == "POST" and re.match(r"^/upload/bigquery/v2/projects/[^/]+/jobs$", r.path):
            start = r.body.index(b"{")
            resource, _ = json.JSONDecoder().raw_decode(r.body[start:].decode())
            found.append(resource["configuration"]["load"])
    return found


def test_runs_are_kept_by_gcs_and_bq_with_the_command_masked(
    gcp: Gcp, mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror.add_month("green", MONTH, rows=25)
    secret = ["--pg-url", "postgresql://etl:s3cret@db/taxi"]
    args = ["backfill", "green", MONTH, "--target", "gcs+bq", "--create-dataset"]
    # the command line recorded is the process's (here pytest's): as a user would type it
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/taxi-cli", *args, *secret])
    first = invoke(*args, *secret)
    assert first.exit_code == 0, first.stderr
    # BigQuery: one load job appending to taxi_cli_runs (no DML, no streaming insert)
    [run_job] = [
        j for j in _jobs_uploaded(gcp) if j["destinationTable"]["tableId"] == "taxi_cli_runs"
    ]
    assert run_job["sourceFormat"] == "NEWLINE_DELIMITED_JSON"
    assert run_job["writeDisposition"] == "WRITE_APPEND"
    assert run_job["createDisposition"] == "CREATE_NEVER"
    assert not [r for r in gcp.bq_requests.recorded() if r.path.endswith("/insertAll")]
    second = invoke(*args)
    assert second.exit_code == 0, second.stderr

    for target in ("gcs", "bq"):
        result = invoke("runs", "--target", target, "--json")
        assert result.exit_code == 0, result.stderr
        runs = json.loads(result.stdout)["runs"]
        assert [(r["label"], r["done"], r["skipped"], r["status"]) for r in runs] == [
            ("backfill", 0, 2, "ok"),  # newest first: the rerun found both done
            ("backfill", 2, 0, "ok"),  # one month, two destinations
        ]
        assert runs[1]["rows"] == 50 and runs[1]["started"] <= runs[0]["started"]
        assert "s3cret" not in runs[1]["command"]
        assert "postgresql://etl:***@db/taxi" in runs[1]["command"]
        text = invoke("runs", "--target", target)
        assert text.exit_code == 0 and "backfill green" in text.stdout


# ---- 5. the report ----------------------------------------------------------------------


@pytest.fixture
def real_months(gcp: Gcp, mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> Gcp:
    mirror.add_file(GREEN_04)
    mirror.add_file(GREEN_10)
    args = ["backfill", "green", "2020-04,2020-10", "--target", "gcs+bq", "--create-dataset"]
    monkeypatch.setattr(sys, "argv", ["taxi-cli", *args])
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    return gcp


@pytest.mark.parametrize("target", ["gcs", "bq"])
def test_the_report_of_the_real_green_months(real_months: Gcp, target: str, tmp_path: Path) -> None:
    code, parts, err = _check(target)
    assert code == 0, err  # the published counts 35,612 and 95,120 agree
    assert {p["actual_rows"] for p in parts.values()} == {35_612, 95_120}

    out = tmp_path / "report.html"
    result = invoke("report", "--target", target, "--out", str(out))
    assert result.exit_code == 0, result.stderr
    assert "2 partitions, 1 runs" in result.stdout
    document = out.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", document)  # offline
    assert document.count("<svg") == 2 and "everything agrees" in document
    assert "green 2020-04 rows" in document and "35,612" in document
    assert "null passenger count" in document and "11,110" in document  # the checks
    assert "backfill green 2020-04,2020-10" in document  # the run history

    md = tmp_path / "report.md"
    result = invoke("report", "--target", target, "--out", str(md), "--format", "md")
    assert result.exit_code == 0, result.stderr
    text = md.read_text()
    assert text.startswith(f"## taxi-cli report: {target}")
    assert "| green 2020-10 | done | 95,120 | 95,120 |" in text
    assert "### Runs" in text

    if target != "bq":
        return
    # one real render: every chart drawn with data, no console error
    common = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    common += [f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run(
        [*common, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-charts="2"' in dom.stdout
    assert [line for line in dom.stderr.splitlines() if "CONSOLE" in line] == []


def test_a_large_footer_takes_a_second_ranged_read(
    gcp: Gcp, mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taxi_cli.gcp import gcs

    mirror.add_month("green", MONTH, rows=20)
    done = invoke("load-gcs", "green", MONTH)
    assert done.exit_code == 0, done.stderr
    monkeypatch.setattr(gcs, "FOOTER_READ", 64)  # smaller than any footer
    gcp.gcs_requests.clear()
    code, parts, err = _check("gcs")
    assert code == 0, err
    assert parts[_uri(gcp, MONTH)]["actual_rows"] == 20
    media = [r for r in gcp.gcs_requests.recorded() if r.query.get("alt") == ["media"]]
    assert len(media) == 2


# ---- 4. an older bq ledger ----------------------------------------------------------------


def test_an_older_ledger_table_gains_the_new_columns(gcp: Gcp) -> None:
    """A `taxi_cli_loads` made before source_rows, checks and upstream_modified gains them
    as NULLABLE columns at the end (tables.patch, a metadata change: no DML,
    https://cloud.google.com/bigquery/docs/managing-table-schemas#add_a_nullable_column)
    before anything is appended. (The emulator records the new schema but its storage
    does not grow the columns, so the appends after it are the real cloud's to judge.)"""
    from google.cloud import bigquery

    from taxi_cli.config import load_settings
    from taxi_cli.gcp import bq_schema
    from taxi_cli.gcp.bq import Warehouse

    client = gcp.bigquery()
    client.create_dataset(f"{gcp.project}.{gcp.dataset}")
    table_id = f"{gcp.project}.{gcp.dataset}.taxi_cli_loads"
    old = [f for f in bq_schema.ledger_schema() if f.name not in _NEW_COLUMNS]
    client.create_table(bigquery.Table(table_id, old))
    gcp.bq_requests.clear()
    Warehouse(load_settings()).ensure_ledger()
    [patch] = [r for r in gcp.bq_requests.recorded() if r.method in ("PATCH", "PUT")]
    fields = patch.json["schema"]["fields"]
    assert [f["name"] for f in fields] == [f.name for f in bq_schema.ledger_schema()]
    added = [f for f in fields if f["name"] in _NEW_COLUMNS]
    assert {f["mode"] for f in added} == {"NULLABLE"} and len(added) == len(_NEW_COLUMNS)
    assert {f.name for f in client.get_table(table_id).schema} >= _NEW_COLUMNS
    gcp.bq_requests.clear()
    Warehouse(load_settings()).ensure_ledger()  # a current table is left alone
    assert [r for r in gcp.bq_requests.recorded() if r.method in ("PATCH", "PUT")] == []


def test_checks_count_is_a_capped_query(gcp: Gcp, mirror: Mirror) -> None:
    mirror.add_month("green", MONTH, rows=15)
    done = invoke("load-bq", "green", MONTH, "--create-dataset")
    assert done.exit_code == 0, done.stderr
    gcp.bq_requests.clear()
    code, parts, err = _check("bq")
    assert code == 0, err
    assert parts[FILE]["actual_rows"] == parts[FILE]["source_rows"] == 15
    # the COUNT of `check` is capped ("maximumBytesBilled", jobs#JobConfigurationQuery)
    [count] = [q for q in gcp.bq_requests.jobs("query") if "GROUP BY filename" in q["query"]]
    assert int(count["maximumBytesBilled"]) == 50_000_000_000


_NEW_COLUMNS = {"upstream_modified", "source_rows", "quarantined", "source_bytes", "checks"}
