"""A dropped trip table (the course's "start over") is noticed by every planner: the
ledger alone never proves a partition is there. backfill's plan, `status` and the
loaders all count a ledger row whose table or partition is gone as missing."""

from __future__ import annotations

import json

import psycopg
import pytest

from taxi_cli.catalog import GREEN
from tests.faults.db_support import cli
from tests.fixtures_mirror import Mirror
from tests.pg_helpers import count

pytestmark = [pytest.mark.integration]
MONTHS = "2020-01..2020-02"


def _plan(pg_url: str) -> dict[str, str]:
    run = cli("backfill", "green", MONTHS, "--pg-url", pg_url, "--dry-run", "--json")
    assert run.code == 0, run.err
    return {item["month"]: item["action"] for item in json.loads(run.out)}


def _backfill(pg_url: str) -> None:
    run = cli("backfill", "green", MONTHS, "--pg-url", pg_url, "-q")
    assert run.code == 0, run.err


def test_a_dropped_table_is_planned_again(mirror: Mirror, pg_url: str, pg_conn) -> None:  # type: ignore[no-untyped-def]
    mirror.add_months("green", ["2020-01", "2020-02"], rows=300)
    _backfill(pg_url)
    assert _plan(pg_url) == {"2020-01": "skip", "2020-02": "skip"}

    pg_conn.execute("DROP TABLE green_tripdata CASCADE")  # the ledger stays behind
    assert _plan(pg_url) == {"2020-01": "load", "2020-02": "load"}
    status = cli("status", "--pg-url", pg_url, "--json")
    assert status.code == 0, status.err
    assert "2020-01" not in status.out  # nothing is claimed that is not there
    _backfill(pg_url)
    assert count(pg_conn, "green_tripdata") == 600

    # one partition dropped: only its month is missing
    pg_conn.execute("DROP TABLE green_tripdata_2020_01")
    assert _plan(pg_url) == {"2020-01": "load", "2020-02": "skip"}
    _backfill(pg_url)
    assert count(pg_conn, "green_tripdata") == 600

    # a truncated partition is as missing as a dropped one
    pg_conn.execute("TRUNCATE green_tripdata_2020_02")
    assert _plan(pg_url) == {"2020-01": "skip", "2020-02": "load"}
    _backfill(pg_url)
    assert count(pg_conn, "green_tripdata") == 600


def test_a_dropped_course_table_is_planned_again(mirror: Mirror, pg_url: str, pg_conn) -> None:  # type: ignore[no-untyped-def]
    mirror.add_months("green", ["2020-01", "2020-02"], rows=300)
    columns = ", ".join(f"{c.name} {c.pg_type}" for c in GREEN.columns)
    pg_conn.execute(f"CREATE TABLE green_tripdata (unique_row_id text, filename text, {columns})")
    _backfill(pg_url)
    assert _plan(pg_url) == {"2020-01": "skip", "2020-02": "skip"}
    pg_conn.execute("TRUNCATE green_tripdata")
    assert _plan(pg_url) == {"2020-01": "load", "2020-02": "load"}
    run = cli("load-pg", "green", "2020-01", "--pg-url", pg_url)  # not "unchanged, skipped"
    assert run.code == 0 and "skipped" not in run.out, run.err
    assert count(pg_conn, "green_tripdata") == 300
    pg_conn.execute("DROP TABLE green_tripdata")
    assert _plan(pg_url) == {"2020-01": "load", "2020-02": "load"}
    _backfill(pg_url)
    assert count(pg_conn, "green_tripdata") == 600


def test_a_dropped_zone_lookup_is_loaded_again(
    mirror: Mirror, pg_url: str, pg_conn: psycopg.Connection
) -> None:
    mirror.add_zones()
    assert cli("load-pg", "zones", "--pg-url", pg_url, "-q").code == 0
    pg_conn.execute("DROP TABLE taxi_zone_lookup")
    run = cli("load-pg", "zones", "--pg-url", pg_url)
    assert run.code == 0, run.err
    assert "skipped" not in run.out
    assert count(pg_conn, "taxi_zone_lookup") == 265
    pg_conn.execute("TRUNCATE taxi_zone_lookup")
    run = cli("load-pg", "zones", "--pg-url", pg_url)
    assert run.code == 0 and "skipped" not in run.out, run.err
    assert count(pg_conn, "taxi_zone_lookup") == 265
