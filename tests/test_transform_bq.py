"""`taxi-cli transform --target bq` against bqemulator, on tables written by `load-bq`.

dbt-bigquery talks to the emulator through `api_endpoint` with a dummy OAuth token (the
profile `transform` writes when TAXI_BQ_ENDPOINT is set). The expected numbers are
computed in Python from the raw rows read back from the emulator, not with the
project's SQL. What only real BigQuery can confirm is listed in the README (transform).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

import pytest
from typer.testing import CliRunner

from taxi_cli.catalog import GREEN
from taxi_cli.cli import app
from tests.dbt_recording_proxy import Proxy, recording_proxy
from tests.fixtures_gcp import Gcp
from tests.fixtures_mirror import REAL, Mirror

pytestmark = pytest.mark.integration

MONTH = "2020-04"


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def expected_mart(gcp: Gcp) -> dict[tuple[str, str], tuple[int, Decimal]]:
    """(zone, month) -> (trips, total amount) by the staging rules, in Python."""
    zones = {
        int(loc): (borough, zone)
        for loc, borough, zone in gcp.query(
            f"SELECT locationid, borough, zone FROM {gcp.table('taxi_zone_lookup')}"
        )
    }
    raw = gcp.query(
        "SELECT vendorid, lpep_pickup_datetime, pulocationid, dolocationid, unique_row_id,"
        f" filename, total_amount FROM {gcp.table('green_tripdata')}"
        " WHERE vendorid IS NOT NULL"
    )
    kept: dict[tuple[int, Any, int], tuple[Any, ...]] = {}
    for row in sorted(raw, key=lambda r: (r[4], r[5])):  # smallest unique_row_id wins
        key = (int(row[0]), row[1], int(row[2]))
        kept.setdefault(key, row)
    mart: dict[tuple[str, str], tuple[int, Decimal]] = defaultdict(lambda: (0, Decimal(0)))
    for _, pickup, pu, do, _, _, total in kept.values():
        known = [zones.get(int(loc)) for loc in (pu, do)]
        if any(z is None or z[0] == "Unknown" for z in known):
            continue
        pickup_zone = known[0]
        assert pickup_zone is not None  # ruled out just above; tells mypy
        cell = (pickup_zone[1], pickup.strftime("%Y-%m-01"))
        trips, amount = mart[cell]
        mart[cell] = (trips + 1, amount + Decimal(repr(total)))
    return dict(mart)


def test_transform_on_bigquery_emulator(gcp: Gcp, mirror: Mirror) -> None:
    mirror.add_file(REAL / GREEN.file_name(MONTH))
    mirror.add_zones()
    for args in (("zones",), ("green", MONTH)):
        code, _, err = cli("load-bq", *args, "--create-dataset", "--format", "csv.gz")
        assert code == 0, err

    code, out, err = cli("transform", "--target", "bq", "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["target"] == "bq" and payload["ok"] is True
    statuses = Counter(n["status"] for n in payload["nodes"])
    assert statuses == {"success": 5, "pass": 20}
    # only green was loaded: yellow is staged as an empty relation, and the log says so
    assert "yellow_tripdata` does not exist; staging it as empty" in " ".join(err.split())

    expected = expected_mart(gcp)
    rows = gcp.query(
        "SELECT revenue_zone, CAST(revenue_month AS STRING), total_monthly_trips,"
        f" revenue_monthly_total_amount FROM {gcp.table('dm_monthly_zone_revenue')}"
        " WHERE service_type = 'Green'"
    )
    actual = {(zone, month): (trips, Decimal(str(total))) for zone, month, trips, total in rows}
    assert actual == expected
    facts = gcp.query(f"SELECT count(*), count(distinct trip_id) FROM {gcp.table('fact_trips')}")
    assert facts[0][0] == facts[0][1] == sum(t for t, _ in expected.values())

    # the same trip has the same trip_id as on PostgreSQL: md5 of its text forms
    sample = gcp.query(
        "SELECT trip_id, vendor_id, CAST(pickup_datetime AS STRING), pickup_location_id"
        f" FROM {gcp.table('fact_trips')} ORDER BY trip_id LIMIT 1"
    )[0]
    text = f"{sample[1]}-{sample[2]}-{sample[3]}-Green"
    assert sample[0] == hashlib.md5(text.encode()).hexdigest()


def test_missing_dataset_exits_2_before_dbt(gcp: Gcp) -> None:
    code, out, err = cli("transform", "--target", "bq")
    assert code == 2
    assert err.strip() == (
        f"taxi-cli: error: BigQuery dataset {gcp.project}.{gcp.dataset} does not exist: check "
        "--dataset / TAXI_BQ_DATASET, or load months first (taxi-cli load-bq green 2020-04 "
        "--create-dataset)"
    )
    assert out == ""


def test_unreachable_endpoint_exits_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAXI_BQ_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("TAXI_GCP_PROJECT", "taxi-test")
    monkeypatch.setenv("TAXI_HTTP_TIMEOUT", "1")
    code, _, err = cli("transform", "--target", "bq")
    assert code == 3
    assert err.startswith(
        "taxi-cli: error: dataset taxi-test.taxi: cannot reach http://127.0.0.1:9"
    )
    assert len(err.strip().splitlines()) == 1


def _queries(proxy: Proxy) -> list[dict[str, Any]]:
    return [job["query"] for job in proxy.jobs() if "query" in job]


def test_fact_trips_is_partitioned_by_file_month_and_a_new_month_replaces_one_partition(
    gcp: Gcp, mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first build creates fact_trips partitioned by file_month (MONTH) and clustered,
    every dbt query capped by maximum_bytes_billed. After loading 2020-05, the build
    finds that only 2020-05 changed and replaces that partition by one copy job
    `fact_trips__dbt_tmp…$202005` -> `fact_trips$202005` with WRITE_TRUNCATE: no DML, no
    other partition written. bqemulator has no partition decorators, so that last copy
    job fails there (exit 1); what it would do is asserted on the requests dbt-bigquery
    sent (docs: https://docs.getdbt.com/reference/resource-configs/bigquery-configs
    "copy_partitions"; https://cloud.google.com/bigquery/docs/managing-partitioned-tables
    "copy an individual partition"). That only the changed month is rebuilt and that the
    result equals a full refresh is shown on PostgreSQL with the same model
    (tests/test_transform.py)."""
    mirror.add_zones()
    mirror.add_month(GREEN, "2020-04", rows=600, seed=21)
    mirror.add_month(GREEN, "2020-05", rows=300, seed=22)
    for args in (("zones",), ("green", "2020-04")):
        code, _, err = cli("load-bq", *args, "--create-dataset", "--format", "csv.gz")
        assert code == 0, err
    with recording_proxy(gcp.bq.url) as proxy:
        monkeypatch.setenv("TAXI_BQ_ENDPOINT", proxy.url)
        code, out, err = cli("transform", "--target", "bq", "--json")
        monkeypatch.setenv("TAXI_BQ_ENDPOINT", gcp.bq.url)
    assert code == 0, err
    queries = _queries(proxy)
    assert queries and all(q["maximumBytesBilled"] == "50000000000" for q in queries)
    normalized = [" ".join(q["query"].split()).lower() for q in queries]
    table_ddl = re.compile(r"create or replace table `[^`]+`\.`[^`]+`\.`fact_trips`")
    (create,) = [q for q in normalized if table_ddl.search(q)]
    assert "partition by date_trunc(file_month, month)" in create
    assert "cluster by pickup_datetime, pickup_location_id" in create
    fact = gcp.table("fact_trips")
    by_month = f"SELECT CAST(file_month AS STRING), count(*) FROM {fact} GROUP BY 1 ORDER BY 1"
    ((month, april),) = gcp.query(by_month)
    assert month == "2020-04-01" and april > 0

    code, _, err = cli("load-bq", "green", "2020-05", "--format", "csv.gz")
    assert code == 0, err
    with recording_proxy(gcp.bq.url) as proxy:
        monkeypatch.setenv("TAXI_BQ_ENDPOINT", proxy.url)
        code, out, err = cli("transform", "--target", "bq", "--json")
    assert "fact_trips: rebuilding file months 2020-05-01" in " ".join(err.split())
    copies = [job["copy"] for job in proxy.jobs() if "copy" in job]
    assert len(copies) == 1, copies
    (copy,) = copies
    (source,) = copy["sourceTables"]
    assert source["tableId"].startswith("fact_trips__dbt_tmp")
    assert source["tableId"].endswith("$202005")
    assert copy["destinationTable"]["tableId"] == "fact_trips$202005"
    assert copy["writeDisposition"] == "WRITE_TRUNCATE"
    # the temporary table holds the changed month only, and nothing else touches fact_trips
    texts = [" ".join(q["query"].split()).lower() for q in _queries(proxy)]
    (tmp,) = [t for t in texts if "fact_trips__dbt_tmp" in t and "create" in t]
    assert "where trips.file_month in ( cast('2020-05-01' as date) )" in tmp
    for text in texts:
        assert not re.search(r"\b(merge|delete|update|insert)\b[^;]*`fact_trips`", text), text
    # bqemulator's only gap: it has no partition decorators
    assert code == 1 and "$202005" in err.strip().splitlines()[-1]
    assert gcp.query(by_month) == [("2020-04-01", april)]  # nothing else was written


def test_a_missing_zone_lookup_is_loaded_through_load_bq_first(gcp: Gcp, mirror: Mirror) -> None:
    """A new project (the scheduled workflow's first run) has trips but no zones."""
    mirror.add_zones()
    mirror.add_month(GREEN, MONTH, rows=300, seed=23)
    code, _, err = cli("load-bq", "green", MONTH, "--create-dataset", "--format", "csv.gz")
    assert code == 0, err
    code, out, err = cli("transform", "--target", "bq", "--json")
    assert code == 0, err
    assert json.loads(out)["ok"] is True
    assert "zone lookup is missing on bq: loading it" in " ".join(err.split())
    expected = len((mirror.root / "misc" / "taxi_zone_lookup.csv").read_text().splitlines()) - 1
    count = f"SELECT count(*) FROM {gcp.table('taxi_zone_lookup')}"
    assert gcp.query(count) == [(expected,)]
    assert gcp.query(f"SELECT count(*) FROM {gcp.table('dim_zones')}") == [(expected,)]
