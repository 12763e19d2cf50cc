"""`check --target pg` against a real PostgreSQL: the real green months reconcile with the
ledger, the source and the published counts; rows deleted behind taxi-cli's back are
found by counting the table (not the ledger), named with the difference, and a reload
makes everything agree again. The ledger records the reconciliation of every load."""

from __future__ import annotations

import json

import psycopg
import pytest
from typer.testing import CliRunner

from taxi_cli.cli import app
from tests.fixtures_mirror import Mirror, rel_path
from tests.pg_helpers import GREEN_04, GREEN_10

pytestmark = pytest.mark.integration
runner = CliRunner()
G04, G10 = "green_tripdata_2020-04.csv", "green_tripdata_2020-10.csv"


def _cli(pg_url: str, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "--pg-url", pg_url])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def loaded(mirror: Mirror, pg_url: str) -> str:
    mirror.add_file(GREEN_04)
    mirror.add_file(GREEN_10)
    code, _, err = _cli(pg_url, "backfill", "green", "2020-04,2020-10", "--target", "pg")
    assert code == 0, err
    return pg_url


def test_the_ledger_records_source_counts_upstream_version_and_checks(
    loaded: str, mirror: Mirror
) -> None:
    with psycopg.connect(loaded) as conn:
        rows = conn.execute(
            "SELECT file, rows, source_rows, written, quarantined, source_bytes, "
            "upstream_size, upstream_etag, upstream_modified, checks "
            "FROM taxi_cli_loads ORDER BY file"
        ).fetchall()
    assert [r[:5] for r in rows] == [
        (G04, 35_612, 35_612, 35_612, 0),
        (G10, 95_120, 95_120, 95_120, 0),
    ]
    head = {r.path: r for r in mirror.requests(method="GET")}
    for file, *_, source_bytes, size, etag, modified, checks in rows:
        path = rel_path("green", file.removesuffix(".csv").rsplit("_", 1)[1])
        assert size == GREEN_04.stat().st_size if file == G04 else GREEN_10.stat().st_size
        assert etag and etag.startswith('"') and modified and modified.endswith("GMT")
        assert path in head
        assert source_bytes > size  # uncompressed
        # the real files pass the default limits; a third of green rows lack passengers
        assert checks["breaches"] == []
        assert checks["counts"]["null_passenger_count"] > 10_000
        assert checks["counts"]["outside_month"] > 0  # meters with wrong clocks
        assert checks["counts"]["dropoff_before_pickup"] == 0


def test_check_agrees_then_finds_deleted_rows_then_agrees_after_a_reload(loaded: str) -> None:
    code, out, err = _cli(loaded, "check", "--target", "pg", "--json")
    assert code == 0, err + out
    result = json.loads(out)
    assert result["ok"] is True and result["mismatches"] == 0
    by_file = {p["file"]: p for p in result["partitions"]}
    assert by_file[G04]["actual_rows"] == by_file[G04]["known_rows"] == 35_612
    assert by_file[G10]["actual_rows"] == by_file[G10]["known_rows"] == 95_120
    figures = {f["figure"]: f for f in result["figures"]}
    assert figures["green 2020-04 rows"]["ok"] is True
    assert figures["green 2020 rows"]["ok"] is None  # 2 of 12 files: not comparable
    assert figures["green 2020 rows"]["files"] == 2

    with psycopg.connect(loaded) as conn:
        conn.execute(
            "DELETE FROM green_tripdata WHERE filename = %s AND ctid IN "
            "(SELECT ctid FROM green_tripdata WHERE filename = %s LIMIT 10)",
            (G10, G10),
        )

    code, out, err = _cli(loaded, "check", "--target", "pg")
    assert code == 1
    assert "✗" in out and "✓" in out  # the other month still agrees
    last = err.strip().splitlines()[-1]
    assert last.startswith("taxi-cli: error: check found")
    assert f"{G10}: 95,110 rows there now, the ledger recorded 95,120 (-10)" in last
    assert G04 not in last

    code, out, err = _cli(
        loaded, "backfill", "green", "2020-10", "--target", "pg", "--reprocess", "completed"
    )
    assert code == 0, err
    code, out, err = _cli(loaded, "check", "green", "--target", "pg")
    assert code == 0, err + out
    assert "2 of 2 partitions agree; 0 mismatch(es)" in out


def test_check_with_nothing_loaded_says_so(pg_url: str) -> None:
    code, out, err = _cli(pg_url, "check", "--target", "pg")
    assert code == 0, err
    assert "nothing recorded" in out


def test_fail_limits_fail_the_partition_and_commit_nothing(mirror: Mirror, pg_url: str) -> None:
    mirror.add_file(GREEN_04)
    code, _, err = _cli(
        pg_url,
        "backfill",
        "green",
        "2020-04",
        "--target",
        "pg",
        "--checks",
        "fail",
        "--json",
    )
    assert code == 0, err  # the real month is within the default limits
    runner_env = {"TAXI_CHECK_NULL_PASSENGER_COUNT": "0.1"}
    result = runner.invoke(
        app,
        ["load-pg", "green", "2020-04", "--force", "--checks", "fail", "--pg-url", pg_url],
        env=runner_env,
    )
    assert result.exit_code == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "green_tripdata_2020-04.csv: data checks failed (null passenger count: 11,110" in last
    with psycopg.connect(pg_url) as conn:
        kept = conn.execute("SELECT count(*) FROM green_tripdata").fetchone()
        status = conn.execute("SELECT status, rows FROM taxi_cli_loads").fetchone()
    assert kept == (35_612,)  # the earlier load's rows stay
    assert status == ("failed", 35_612)
    # warn: the same limits load it and `check` shows the breach as a warning, or a
    # mismatch with --checks fail
    result = runner.invoke(
        app, ["load-pg", "green", "2020-04", "--force", "--pg-url", pg_url], env=runner_env
    )
    assert result.exit_code == 0, result.stderr
    code, out, _ = _cli(pg_url, "check", "--target", "pg")
    assert code == 0 and "! green_tripdata_2020-04.csv: null passenger count: 11,110" in out
    result = runner.invoke(app, ["check", "--checks", "fail", "--pg-url", pg_url], env=runner_env)
    assert result.exit_code == 1
    assert "null passenger count" in result.stderr
