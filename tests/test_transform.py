"""`taxi-cli transform` on a real PostgreSQL, with tables written by the real loaders.

The module's warehouse holds the real green 2020-04 and 2020-10 release files, the zone
lookup and a synthetic yellow month, each extracted from a local release mirror and
loaded by `taxi_cli.postgres`. dbt runs twice on it (module scope: dbt is slow); every
expected number is computed with independent SQL over the raw tables.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from taxi_cli import extract
from taxi_cli.catalog import GREEN, TAXIS, YELLOW, Partition
from taxi_cli.cli import app
from taxi_cli.config import Settings, load_settings
from taxi_cli.plan import Action
from taxi_cli.postgres.destination import PgDestination
from tests.fixtures_mirror import REAL, Mirror

pytestmark = pytest.mark.integration

GREEN_MONTHS = ("2020-04", "2020-10")
YELLOW_MONTH = "2020-04"
YELLOW_ROWS = 3000

# The staging models' definition, restated independently: rows with a vendor, one per
# (vendor, pickup time, pickup zone) within a service, the smallest unique_row_id kept;
# then both zones known and not in the 'Unknown' borough.
_KEPT = """(
    SELECT DISTINCT ON (vendorid::int, {pickup}, pulocationid::int)
        '{service}' AS service_type, {pickup} AS pickup, pulocationid::int AS pu,
        dolocationid::int AS do_, passenger_count, trip_distance::numeric AS trip_distance,
        fare_amount::numeric AS fare, extra::numeric AS extra, mta_tax::numeric AS mta_tax,
        tip_amount::numeric AS tip, tolls_amount::numeric AS tolls, {ehail} AS ehail,
        improvement_surcharge::numeric AS improvement, total_amount::numeric AS total
    FROM {table}
    WHERE vendorid IS NOT NULL
    ORDER BY vendorid::int, {pickup}, pulocationid::int, unique_row_id, filename,
        {dropoff}, total_amount::numeric
)"""
EXPECTED_TRIPS = f"""
    WITH kept AS (
        {
    _KEPT.format(
        service="Green",
        pickup="lpep_pickup_datetime",
        dropoff="lpep_dropoff_datetime",
        ehail="ehail_fee::numeric",
        table="green_tripdata",
    )
}
        UNION ALL
        {
    _KEPT.format(
        service="Yellow",
        pickup="tpep_pickup_datetime",
        dropoff="tpep_dropoff_datetime",
        ehail="0::numeric",
        table="yellow_tripdata",
    )
}
    ),
    known AS (SELECT locationid, zone FROM taxi_zone_lookup WHERE borough <> 'Unknown')
    SELECT kept.*, pz.zone AS pickup_zone
    FROM kept
    JOIN known pz ON pz.locationid = kept.pu
    JOIN known dz ON dz.locationid = kept.do_
"""
EXPECTED_MART = f"""
    SELECT pickup_zone, date_trunc('month', pickup)::date, service_type,
        sum(fare), sum(extra), sum(mta_tax), sum(tip), sum(tolls), sum(ehail),
        sum(improvement), sum(total), count(*),
        round(avg(passenger_count), 9), round(avg(trip_distance), 9)
    FROM ({EXPECTED_TRIPS}) trips
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
ACTUAL_MART = """
    SELECT revenue_zone, revenue_month, service_type,
        revenue_monthly_fare, revenue_monthly_extra, revenue_monthly_mta_tax,
        revenue_monthly_tip_amount, revenue_monthly_tolls_amount, revenue_monthly_ehail_fee,
        revenue_monthly_improvement_surcharge, revenue_monthly_total_amount,
        total_monthly_trips, round(avg_monthly_passenger_count, 9),
        round(avg_monthly_trip_distance, 9)
    FROM dm_monthly_zone_revenue ORDER BY 1, 2, 3
"""
SNAPSHOT = """
    SELECT (SELECT count(*) FROM fact_trips),
           (SELECT md5(string_agg(trip_id || ':' || total_amount, ',' ORDER BY trip_id))
              FROM fact_trips),
           (SELECT sum(revenue_monthly_total_amount) FROM dm_monthly_zone_revenue),
           (SELECT count(*) FROM dm_monthly_zone_revenue)
"""

_SCRUB = ("TAXI_", "PG", "GOOGLE_", "STORAGE_EMULATOR_HOST", "BQEMU_")


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str
    snapshot: tuple[Any, ...]

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.stdout)
        return data


def isolate(mp: pytest.MonkeyPatch, home: Path) -> None:
    """What tests/fixtures_env.py does per test, for a module-scoped fixture."""
    for name in list(os.environ):
        if name.startswith(_SCRUB):
            mp.delenv(name, raising=False)
    for var, sub in (
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_STATE_HOME", "state"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CONFIG_HOME", "config"),
        ("TAXI_DATA_DIR", "downloads"),
        ("TAXI_STATE_DIR", "taxi-state"),
    ):
        mp.setenv(var, str(home / sub))
    mp.chdir(home)


def serve(mp: pytest.MonkeyPatch, mirror: Mirror) -> None:
    mp.setenv("TAXI_SOURCE_URL", mirror.url)
    mp.setenv("TAXI_MANIFEST", str(mirror.manifest_path))
    mp.setenv("TAXI_HTTP_BACKOFF", "0.01")


def load(cfg: Settings, taxi: str, month: str | None) -> None:
    """Extract from the mirror and load with the real loaders (what load-pg does)."""
    destination = PgDestination(cfg)
    if month is None:
        destination.load_zones(extract.ensure_zones(cfg), force=False)
    else:
        part = Partition(TAXIS[taxi], month)
        destination.load(part, extract.ensure_file(cfg, TAXIS[taxi], month), Action.LOAD)


def new_database(server_url: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    head, _, query = server_url.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


def transform(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["transform", *args])
    return result.exit_code, result.stdout, result.stderr


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def warehouse(
    pg_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[Run]]]:
    """Real green months + zones + a synthetic yellow month, loaded, then built twice."""
    url = new_database(pg_server_url)
    base = tmp_path_factory.mktemp("warehouse")
    mirror = Mirror(base / "root", base / "manifest.csv")
    (base / "root").mkdir()
    mirror.start()
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, base)
        serve(mp, mirror)
        mp.setenv("TAXI_PG_URL", url)
        for month in GREEN_MONTHS:
            mirror.add_file(REAL / GREEN.file_name(month))
        mirror.add_zones()
        mirror.add_month(YELLOW, YELLOW_MONTH, rows=YELLOW_ROWS, seed=11)
        cfg = load_settings()
        load(cfg, "zones", None)
        for month in GREEN_MONTHS:
            load(cfg, "green", month)
        load(cfg, "yellow", YELLOW_MONTH)
        runs = []
        for _ in range(2):
            code, out, err = transform("--json")
            runs.append(Run(code, out, err, tuple(query(url, SNAPSHOT)[0])))
        try:
            yield url, runs
        finally:
            mirror.stop()
            with psycopg.connect(pg_server_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def test_build_succeeds_and_reports_every_node(warehouse: tuple[str, list[Run]]) -> None:
    _, runs = warehouse
    first = runs[0]
    assert first.exit_code == 0, first.stderr
    payload = first.payload
    assert payload["ok"] is True and payload["target"] == "pg"
    statuses = {n["name"]: n["status"] for n in payload["nodes"]}
    models = {n["name"] for n in payload["nodes"] if n["kind"] == "model"}
    assert models == {
        "stg_green_tripdata",
        "stg_yellow_tripdata",
        "dim_zones",
        "fact_trips",
        "dm_monthly_zone_revenue",
    }
    assert set(statuses.values()) <= {"success", "pass"}, statuses
    assert sum(1 for n in payload["nodes"] if n["kind"] == "test") == 20
    # one progress line per node on stderr, nothing of dbt's own log on stdout
    assert first.stderr.count("[") >= len(payload["nodes"])
    assert "fact_trips__trip_id__unique" in first.stderr
    assert "Running with dbt" not in first.stdout + first.stderr


def test_fact_trips_holds_exactly_the_kept_trips(warehouse: tuple[str, list[Run]]) -> None:
    url, runs = warehouse
    expected = query(
        url, f"SELECT service_type, count(*) FROM ({EXPECTED_TRIPS}) e GROUP BY 1 ORDER BY 1"
    )
    actual = query(url, "SELECT service_type, count(*) FROM fact_trips GROUP BY 1 ORDER BY 1")
    assert actual == expected
    assert [s for s, _ in actual] == ["Green", "Yellow"]
    # the filters did something: vendorless rows and unknown zones exist in the raw data
    raw = query(url, "SELECT count(*) FROM green_tripdata")[0][0]
    assert dict(actual)["Green"] < raw
    fact_rows = next(n["rows"] for n in runs[0].payload["nodes"] if n["name"] == "fact_trips")
    assert fact_rows == sum(n for _, n in actual)


def test_revenue_mart_equals_independent_aggregation(warehouse: tuple[str, list[Run]]) -> None:
    url, _ = warehouse
    expected = query(url, EXPECTED_MART)
    actual = query(url, ACTUAL_MART)
    assert len(actual) > 100
    assert actual == expected


def test_trip_id_is_the_documented_md5(warehouse: tuple[str, list[Run]]) -> None:
    """md5 of vendor, pickup time, pickup zone and service as text, '-'-joined (as on BQ)."""
    url, _ = warehouse
    rows = query(
        url,
        "SELECT trip_id, vendor_id, pickup_datetime::text, pickup_location_id, service_type"
        " FROM fact_trips ORDER BY trip_id LIMIT 50",
    )
    for trip_id, *fields in rows:
        text = "-".join(str(f) for f in fields)
        assert trip_id == hashlib.md5(text.encode()).hexdigest()


def test_second_run_changes_nothing(warehouse: tuple[str, list[Run]]) -> None:
    _, (first, second) = warehouse
    assert second.exit_code == 0, second.stderr
    assert second.snapshot == first.snapshot
    rows = {n["name"]: n["rows"] for n in second.payload["nodes"] if n["kind"] == "model"}
    before = {n["name"]: n["rows"] for n in first.payload["nodes"] if n["kind"] == "model"}
    # fact_trips is incremental: no raw month changed, so no row is written again
    assert rows == {**before, "fact_trips": 0}
    assert "fact_trips: rebuilding file months none" in " ".join(second.stderr.split())


# ---- failures and options, on a small database of their own -----------------------------


@pytest.fixture
def small(pg_url: str, mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> str:
    """Zones and a synthetic green month of 800 rows, loaded by the real loaders."""
    monkeypatch.setenv("TAXI_PG_URL", pg_url)
    mirror.add_zones()
    mirror.add_month(GREEN, "2020-04", rows=800, seed=3)
    mirror.add_month(GREEN, "2020-05", rows=300, seed=4)
    cfg = load_settings()
    load(cfg, "zones", None)
    load(cfg, "green", "2020-04")
    return pg_url


def test_test_run_limits_staging_and_a_failing_test_exits_1(small: str) -> None:
    code, out, err = transform("--test-run", "--select", "stg_green_tripdata")
    assert code == 0, err
    assert query(small, "SELECT count(*) FROM stg_green_tripdata") == [(100,)]
    assert "stg_green__payment_type__accepted_values" in out

    # dbt's views on the raw table do not block the loaders: reload a month, add one
    cfg = load_settings()
    month = extract.ensure_file(cfg, GREEN, "2020-04")
    PgDestination(cfg).load(Partition(GREEN, "2020-04"), month, Action.RELOAD)
    load(cfg, "green", "2020-05")
    assert query(small, "SELECT count(*) FROM stg_green_tripdata") == [(100,)]

    # a payment type outside the TLC dictionary breaks accepted_values
    with psycopg.connect(small, autocommit=True) as conn:
        conn.execute(
            "UPDATE green_tripdata SET payment_type = 9 WHERE unique_row_id = "
            "(SELECT min(unique_row_id) FROM green_tripdata WHERE vendorid IS NOT NULL)"
        )
    code, out, err = transform("--select", "stg_green_tripdata")
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("taxi-cli: error: test stg_green__payment_type__accepted_values fail")
    assert "Got 1 result" in last
    assert "fail" in out  # the summary table is still printed

    # arguments after `--` reach dbt: excluding the failing test makes the build pass
    code, out, err = transform(
        "--select",
        "stg_green_tripdata",
        "--",
        "--exclude",
        "stg_green__payment_type__accepted_values",
    )
    assert code == 0, err
    assert "stg_green__payment_type__accepted_values" not in out


# fact_trips' rows with PostgreSQL's xmin (the transaction that wrote each row): a row
# that was not rewritten keeps its xmin
FACT_BY_MONTH = """
    SELECT file_month::text, count(*),
        md5(string_agg(trip_id || ':' || xmin::text, ',' ORDER BY trip_id))
    FROM fact_trips GROUP BY 1 ORDER BY 1
"""
FACT_ROWS = "SELECT * FROM fact_trips ORDER BY trip_id"


def _model_rows(stdout: str) -> dict[str, int | None]:
    nodes = json.loads(stdout)["nodes"]
    return {n["name"]: n["rows"] for n in nodes if n["kind"] == "model"}


def test_a_new_or_changed_month_rebuilds_only_that_month(small: str) -> None:
    """delete+insert by file month: loading 2020-05 after a build writes 2020-05's rows and
    leaves 2020-04's rows as they were; the result equals a full refresh."""
    code, out, err = transform("--json")
    assert code == 0, err
    first = query(small, FACT_BY_MONTH)
    assert [m for m, *_ in first] == ["2020-04-01"]
    assert _model_rows(out)["fact_trips"] == first[0][1]

    load(load_settings(), "green", "2020-05")
    code, out, err = transform("--json")
    assert code == 0, err
    second = query(small, FACT_BY_MONTH)
    assert [m for m, *_ in second] == ["2020-04-01", "2020-05-01"]
    assert second[0] == first[0]  # 2020-04: the same rows, not rewritten (same xmin)
    assert _model_rows(out)["fact_trips"] == second[1][1]  # only 2020-05's rows written
    assert "fact_trips: rebuilding file months 2020-05-01" in " ".join(err.split())
    incremental = query(small, FACT_ROWS)

    # a reload that changes a row of 2020-04 (new content, new unique_row_id) rebuilds
    # 2020-04 and leaves 2020-05 alone
    with psycopg.connect(small, autocommit=True) as conn:
        conn.execute(
            "UPDATE green_tripdata SET unique_row_id = md5('changed'), total_amount = 999"
            " WHERE unique_row_id = (SELECT min(unique_row_id) FROM green_tripdata"
            " WHERE filename = 'green_tripdata_2020-04.csv' AND vendorid IS NOT NULL)"
        )
    code, out, err = transform("--json")
    assert code == 0, err
    third = query(small, FACT_BY_MONTH)
    assert third[1] == second[1] and third[0][2] != second[0][2]
    assert "fact_trips: rebuilding file months 2020-04-01" in " ".join(err.split())
    changed = query(small, FACT_ROWS)

    code, out, err = transform("--json", "--full-refresh")
    assert code == 0, err
    assert query(small, FACT_ROWS) == changed  # incremental == full rebuild, row for row
    assert changed != incremental and len(changed) == len(incremental)
    refreshed = query(small, FACT_BY_MONTH)
    assert [r[2] for r in refreshed] != [r[2] for r in third]  # every row rewritten


def test_missing_zone_lookup_is_loaded_before_dbt(
    pg_url: str, mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAXI_PG_URL", pg_url)
    mirror.add_zones()
    mirror.add_month(GREEN, "2020-04", rows=200, seed=5)
    load(load_settings(), "green", "2020-04")
    only_zones = ("--select", "dim_zones", "--", "--indirect-selection", "cautious")
    code, out, err = transform("--json", *only_zones)
    assert code == 0, err
    assert json.loads(out)["ok"] is True  # stdout holds transform's result only
    assert "zone lookup is missing on pg: loading it" in err
    expected = len((mirror.root / "misc" / "taxi_zone_lookup.csv").read_text().splitlines()) - 1
    assert query(pg_url, "SELECT count(*) FROM taxi_zone_lookup") == [(expected,)]
    assert query(pg_url, "SELECT count(*) FROM dim_zones") == [(expected,)]
    # there now: not loaded again
    code, _, err = transform(*only_zones)
    assert code == 0, err
    assert "zone lookup is missing" not in err


def test_a_zone_lookup_that_cannot_be_fetched_fails_before_dbt(
    pg_url: str, mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAXI_PG_URL", pg_url)
    mirror.add_month(GREEN, "2020-04", rows=200, seed=5)
    load(load_settings(), "green", "2020-04")
    code, _, err = transform("--select", "dim_zones")
    assert code != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("taxi-cli: error: ") and "taxi_zone_lookup.csv" in last
    assert "model dim_zones" not in err  # dbt never started


def test_unreachable_postgres_exits_3() -> None:
    code, _, err = transform("--pg-url", "postgresql://nobody:secret@127.0.0.1:1/nowhere")
    assert code == 3
    assert err.startswith("taxi-cli: error: cannot connect")
    assert "secret" not in err


def test_unknown_target_exits_2() -> None:
    code, _, err = transform("--target", "snowflake")
    assert code == 2
    assert "Invalid value for '--target'" in err and "'pg', 'bq'" in err


def test_a_second_transform_on_the_same_target_is_refused(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taxi_cli.lock import RunLock, lock_path

    monkeypatch.setenv("TAXI_PG_URL", pg_url)
    with RunLock(lock_path(load_settings(), "dbt-pg"), what="transform --target pg"):
        code, _, err = transform()
    assert code == 1
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("taxi-cli: error: another transform --target pg is running (pid ")
    )


def test_a_fact_trips_built_before_it_was_incremental_asks_for_a_full_refresh(small: str) -> None:
    with psycopg.connect(small, autocommit=True) as conn:
        conn.execute("CREATE TABLE fact_trips AS SELECT 'x'::text AS trip_id")  # old layout
    code, _, err = transform()
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert "model fact_trips error" in last and "no source_fingerprint column" in last
    assert "taxi-cli transform --full-refresh" in last
    code, _, err = transform("--full-refresh")
    assert code == 0, err
    assert query(
        small, "SELECT count(*) > 0, count(source_fingerprint) = count(*) FROM fact_trips"
    )[0] == (True, True)


def test_a_full_build_after_a_test_run_rebuilds_the_sampled_months(small: str) -> None:
    code, _, err = transform("--test-run")
    assert code == 0, err
    (sampled,) = query(small, "SELECT count(*) FROM fact_trips")[0]
    assert 0 < sampled <= 100
    code, _, err = transform()
    assert code == 0, err
    full = query(small, FACT_ROWS)
    assert len(full) > sampled
    code, _, err = transform("--full-refresh")
    assert code == 0, err
    assert query(small, FACT_ROWS) == full
