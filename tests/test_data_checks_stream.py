"""The data checks load-pg counts while it makes the rows equal PostgreSQL's own count
over the rows in the table (`sql_data_checks`), on both paths that make rows: the C
fast path and the Python path (a block with a quoted field), with and without the zone
lookup, and with quarantined rows left out."""

from __future__ import annotations

import gzip
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from taxi_cli.catalog import GREEN, YELLOW, TaxiType
from taxi_cli.cli import app
from tests.fixtures_mirror import Mirror, rel_path
from tests.pg_helpers import GREEN_04, GREEN_10, lines_of, sql_data_checks

pytestmark = pytest.mark.integration
runner = CliRunner()


def _recorded(pg_url: str, file: str) -> dict[str, Any]:
    with psycopg.connect(pg_url) as conn:
        found = conn.execute(
            "SELECT checks FROM taxi_cli_loads WHERE file = %s", (file,)
        ).fetchone()
    assert found is not None and found[0] is not None
    counts: dict[str, Any] = found[0]["counts"]
    return counts


def _oracle(pg_url: str, taxi: TaxiType, file: str, month: str) -> dict[str, int]:
    with psycopg.connect(pg_url) as conn:
        return sql_data_checks(conn, "public", taxi, file, month)


def _load(pg_url: str, *args: str) -> None:
    result = runner.invoke(app, ["load-pg", *args, "--pg-url", pg_url, "--force"])
    assert result.exit_code == 0, result.stderr


def test_real_months_with_and_without_the_zone_lookup(mirror: Mirror, pg_url: str) -> None:
    mirror.add_file(GREEN_04)
    mirror.add_file(GREEN_10)
    mirror.add_zones()
    for month, path in (("2020-04", GREEN_04), ("2020-10", GREEN_10)):
        file = path.name.removesuffix(".gz")
        _load(pg_url, "green", month)
        without = _recorded(pg_url, file)
        assert without == _oracle(pg_url, GREEN, file, month)
        assert without["outside_month"] > 0 and without["null_passenger_count"] > 0
    _load(pg_url, "zones")
    for month, path in (("2020-04", GREEN_04), ("2020-10", GREEN_10)):
        file = path.name.removesuffix(".gz")
        _load(pg_url, "green", month)
        assert _recorded(pg_url, file) == _oracle(pg_url, GREEN, file, month)


def test_a_synthetic_yellow_month_with_every_kind_of_breach(mirror: Mirror, pg_url: str) -> None:
    mirror.add_month("yellow", "2021-03", rows=30_000, seed=11)
    _load(pg_url, "yellow", "2021-03")
    file = "yellow_tripdata_2021-03.csv"
    counts = _recorded(pg_url, file)
    assert counts == _oracle(pg_url, YELLOW, file, "2021-03")
    assert counts["negative_amounts"] > 0 and counts["outside_month"] > 0


def test_the_python_path_and_quarantined_rows(mirror: Mirror, pg_url: str) -> None:
    lines = lines_of(GREEN_04)[:3000]
    quoted = lines[10].split(",")
    quoted[3] = '"N"'  # a quoted field: the C path declines the block, Python makes it
    lines[10] = ",".join(quoted)
    bad = lines[20].split(",")
    bad[9] = "1e309"  # a bad fare: quarantined, not counted
    bad[7] = ""  # ... though its passenger count is null
    lines[20] = ",".join(bad)
    odd = lines[30].split(",")
    odd[5] = "097"  # not the lookup's spelling of a zone id
    odd[9] = "-2.5"
    lines[30] = ",".join(odd)
    body = gzip.compress(("\r\n".join(lines) + "\r\n").encode(), mtime=0)
    mirror.add_bytes(rel_path("green", "2020-04"), body)
    _load(pg_url, "green", "2020-04", "--bad-rows", "quarantine")
    file = "green_tripdata_2020-04.csv"
    counts = _recorded(pg_url, file)
    assert counts == _oracle(pg_url, GREEN, file, "2020-04")
    assert counts["unknown_zones"] >= 1 and counts["negative_amounts"] >= 1
