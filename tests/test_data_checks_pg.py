"""The data checks a pg load records, counted exactly on a hand-made month: pickups
outside the file's month (both edges), dropoff before pickup, negative fare or total,
null passenger count, and zone ids unknown to the zone lookup (or, before the lookup
is loaded, outside the release's 1..265)."""

from __future__ import annotations

import gzip
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from taxi_cli.catalog import GREEN
from taxi_cli.cli import app
from tests.fixtures_mirror import Mirror, rel_path

pytestmark = pytest.mark.integration
runner = CliRunner()

ROW = "2,{p},{d},N,1,{pu},{do},{pc},.86,{fare},0.5,0.5,0,0,,0.3,{total},2,1,"
OK = {"p": "2020-04-01 00:10:16", "d": "2020-04-01 00:16:32", "pu": "97", "do": "49"}
OK |= {"pc": "2", "fare": "6", "total": "7.3"}
ROWS = [
    OK,
    OK | {"p": "2008-12-31 23:59:59", "d": "2009-01-01 00:05:00"},  # outside: before
    OK | {"p": "2020-05-01 00:00:00", "d": "2020-05-01 00:09:00"},  # outside: the next month
    OK | {"p": "2020-04-30 23:59:59", "d": "2020-05-01 00:09:00"},  # inside (last second)
    OK | {"p": "2020-04-02 10:00:00", "d": "2020-04-02 09:59:00"},  # dropoff before pickup
    OK | {"fare": "-3", "total": "-3.8"},  # negative fare and total: one row
    OK | {"total": "-0.3"},  # negative total only
    OK | {"pc": ""},  # no passenger count
    OK | {"pu": "999"},  # no such zone
    OK | {"do": "0"},  # no such zone either
    OK | {"pu": "097"},  # not the lookup's spelling of 97: unknown
    OK | {"pu": "264", "do": "265"},  # the lookup's Unknown zones are known ids
]
EXPECTED = {
    "outside_month": 2,
    "dropoff_before_pickup": 1,
    "negative_amounts": 2,
    "null_passenger_count": 1,
    "unknown_zones": 3,
}


def _checks(pg_url: str) -> dict[str, Any]:
    with psycopg.connect(pg_url) as conn:
        found = conn.execute("SELECT checks FROM taxi_cli_loads WHERE month = '2020-04'").fetchone()
    assert found is not None
    checks: dict[str, Any] = found[0]
    return checks


def test_each_check_counts_exactly_its_rows(mirror: Mirror, pg_url: str) -> None:
    lines = [",".join(GREEN.header)] + [ROW.format(**row) for row in ROWS]
    body = gzip.compress(("\r\n".join(lines) + "\r\n").encode(), mtime=0)
    mirror.add_bytes(rel_path("green", "2020-04"), body)
    result = runner.invoke(app, ["load-pg", "green", "2020-04", "--pg-url", pg_url])
    assert result.exit_code == 0, result.stderr
    checks = _checks(pg_url)
    assert checks["counts"] == EXPECTED  # without the lookup: ids outside 1..265
    assert checks["rows"] == len(ROWS)
    # 2 of 12 rows is far above the default limits: recorded as breaches, loaded (warn)
    assert set(checks["breaches"]) == {
        "outside_month",
        "dropoff_before_pickup",
        "negative_amounts",
        "unknown_zones",
    }

    mirror.add_zones()
    result = runner.invoke(app, ["load-pg", "zones", "--pg-url", pg_url])
    assert result.exit_code == 0, result.stderr
    result = runner.invoke(app, ["load-pg", "green", "2020-04", "--force", "--pg-url", pg_url])
    assert result.exit_code == 0, result.stderr
    assert _checks(pg_url)["counts"] == EXPECTED  # the same ids are unknown to the lookup

    result = runner.invoke(app, ["check", "--pg-url", pg_url])
    assert result.exit_code == 1  # the published count of green 2020-04 is 35,612
    assert "! green_tripdata_2020-04.csv: dropoff before pickup: 1 (8.33%, limit 1.00%)" in (
        result.stdout
    )
