"""`taxi-cli transform --target bq` against bqemulator, on tables written by `load-bq`.

dbt-bigquery talks to the emulator through `api_endpoint` with a dummy OAuth token (the
profile `transform` writes when TAXI_BQ_ENDPOINT is set). The expected numbers are
computed in Python from the raw rows read back from the emulator, not with the
project's SQL. What only real BigQuery can confirm is listed in the README (transform).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

import pytest
from typer.testing import CliRunner

from taxi_cli.catalog import GREEN
from taxi_cli.cli import app
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
