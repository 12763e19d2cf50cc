"""load-pg against a real PostgreSQL: counts, row ids, filename, idempotence, modes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypedDict, Unpack

import psycopg
import pytest
from typer.testing import CliRunner

from taxi_cli.catalog import GREEN
from taxi_cli.cli import app
from taxi_cli.config import load_settings
from taxi_cli.postgres.destination import ledger_rows, record_failure
from taxi_cli.postgres.loader import LoadResult, load_file
from tests.fixtures_mirror import Mirror
from tests.pg_helpers import (
    GREEN_04,
    GREEN_10,
    count,
    lines_of,
    md5_mismatches,
    sha256,
    write_gz,
)

pytestmark = pytest.mark.integration
G04, G10 = "green_tripdata_2020-04.csv", "green_tripdata_2020-10.csv"


class _Options(TypedDict, total=False):
    """The `load_file` keywords these tests vary; the rest keep their defaults."""

    month: str
    mode: str
    force: bool


def _load(conn: psycopg.Connection, path: Path, name: str, **kw: Unpack[_Options]) -> LoadResult:
    return load_file(conn, GREEN, path, name, sha256(path), **kw)


def test_real_green_months_load_exactly_with_course_row_ids(pg_conn: psycopg.Connection) -> None:
    r04 = _load(pg_conn, GREEN_04, G04, month="2020-04")
    r10 = _load(pg_conn, GREEN_10, G10, month="2020-10")
    assert (r04.rows, r10.rows) == (35_612, 95_120)
    assert count(pg_conn, "green_tripdata") == 35_612 + 95_120
    by_file: dict[str, int] = dict(
        pg_conn.execute("SELECT filename, count(*) FROM green_tripdata GROUP BY 1").fetchall()
    )
    assert by_file == {G04: 35_612, G10: 95_120}
    # the homework's query shape works on the filename column
    assert count(pg_conn, "green_tripdata", "filename LIKE 'green_tripdata_2020-%'") == 130_732
    # every row's id equals the md5 PostgreSQL computes over the typed columns
    assert (
        md5_mismatches(pg_conn, "green_tripdata", "lpep_pickup_datetime", "lpep_dropoff_datetime")
        == 0
    )
    # columns are the course's: lowercase, unique_row_id and filename first
    cols = [
        r[0]
        for r in pg_conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'green_tripdata' ORDER BY ordinal_position"
        ).fetchall()
    ]
    assert cols == ["unique_row_id", "filename", *[c.sql_name for c in GREEN.columns]]


def test_reload_is_skipped_by_the_ledger_and_force_reloads(pg_conn: psycopg.Connection) -> None:
    first = _load(pg_conn, GREEN_04, G04)
    again = _load(pg_conn, GREEN_04, G04)
    assert not first.skipped and again.skipped
    assert again.table_rows == 35_612
    forced = _load(pg_conn, GREEN_04, G04, force=True)
    assert not forced.skipped and forced.rows == 35_612
    assert count(pg_conn, "green_tripdata") == 35_612
    (row,) = pg_conn.execute(
        "SELECT file, sha256, rows, status, mode FROM taxi_cli_loads"
    ).fetchall()
    assert row == (G04, sha256(GREEN_04), 35_612, "done", "replace")


def test_replace_leaves_exactly_the_new_content_of_a_changed_file(
    pg_conn: psycopg.Connection, tmp_path: Path
) -> None:
    _load(pg_conn, GREEN_04, G04)
    smaller = write_gz(tmp_path / "changed.csv.gz", lines_of(GREEN_04)[:1001])
    result = _load(pg_conn, smaller, G04)
    assert result.rows == 1000
    assert count(pg_conn, "green_tripdata") == 1000
    assert count(pg_conn, "green_tripdata", f"filename = '{G04}'") == 1000


def test_merge_mode_has_the_course_semantics(pg_conn: psycopg.Connection, tmp_path: Path) -> None:
    r04 = _load(pg_conn, GREEN_04, G04, mode="merge")
    r10 = _load(pg_conn, GREEN_10, G10, mode="merge")
    assert (r04.rows, r10.rows) == (35_612, 95_120)
    again = _load(pg_conn, GREEN_04, G04, mode="merge", force=True)
    assert again.rows == 0  # every id is present already
    assert count(pg_conn, "green_tripdata") == 35_612 + 95_120
    # duplicates inside one file are all inserted, as the course's MERGE does
    header, row_a, row_b = lines_of(GREEN_10)[:3]
    dupes = write_gz(tmp_path / "dupes.csv.gz", [header, row_a, row_a, row_b])
    name = "green_tripdata_2019-01.csv"
    fresh = load_file(pg_conn, GREEN, dupes, name, "d1", mode="merge", schema="other")
    assert fresh.rows == 3
    assert count(pg_conn, "other.green_tripdata") == 3


def test_an_existing_course_table_is_loaded_in_place(pg_conn: psycopg.Connection) -> None:
    columns = ", ".join(f"{c.name} {c.pg_type}" for c in GREEN.columns)  # unquoted, as the course
    pg_conn.execute(f"CREATE TABLE green_tripdata (unique_row_id text, filename text, {columns})")
    _load(pg_conn, GREEN_04, G04)
    _load(pg_conn, GREEN_04, G04, force=True)
    assert count(pg_conn, "green_tripdata") == 35_612
    _load(pg_conn, GREEN_04, G04, mode="merge", force=True)
    assert count(pg_conn, "green_tripdata") == 35_612
    kind = pg_conn.execute(
        "SELECT relkind FROM pg_class WHERE relname = 'green_tripdata'"
    ).fetchone()
    assert kind == ("r",)


def test_ledger_api_reads_rows_and_records_failures(pg_url: str) -> None:
    cfg = load_settings({"pg_url": pg_url})
    assert ledger_rows(cfg) == []
    with psycopg.connect(pg_url, autocommit=True) as conn:
        _load(conn, GREEN_04, G04, month="2020-04")
    (done,) = ledger_rows(cfg)
    assert (done.file, done.taxi, done.month, done.status, done.rows) == (
        G04,
        "green",
        "2020-04",
        "done",
        35_612,
    )
    record_failure(cfg, "green", "2020-10", G10, "download failed: 404")
    rows = {r.file: r for r in ledger_rows(cfg)}
    assert rows[G10].status == "failed" and rows[G10].error == "download failed: 404"
    assert rows[G04].status == "done"


def test_cli_extracts_and_loads_months_and_zones(mirror: Mirror, pg_url: str) -> None:
    mirror.add_file(GREEN_04)
    mirror.add_zones()
    runner = CliRunner()
    result = runner.invoke(app, ["load-pg", "green", "2020-04", "--pg-url", pg_url, "--json"])
    assert result.exit_code == 0, result.stderr
    (loaded,) = json.loads(result.stdout)["partitions"]
    assert (loaded["result"]["file"], loaded["rows"], loaded["state"]) == (G04, 35_612, "done")
    assert loaded["result"]["where"] == "public.green_tripdata"
    again = runner.invoke(app, ["load-pg", "green", "2020-04", "--pg-url", pg_url, "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["skipped"] == 1

    zones = runner.invoke(app, ["load-pg", "zones", "--pg-url", pg_url])
    assert zones.exit_code == 0, zones.stderr
    assert "265 rows" in zones.stdout and "zones -> pg" in zones.stdout
    with psycopg.connect(pg_url) as conn:
        assert count(conn, "green_tripdata") == 35_612
        assert conn.execute(
            "SELECT locationid, borough, zone, service_zone FROM taxi_zone_lookup "
            "WHERE locationid IN (1, 265) ORDER BY 1"
        ).fetchall() == [(1, "EWR", "Newark Airport", "EWR"), (265, "Unknown", "NA", "N/A")]
        assert count(conn, "taxi_zone_lookup") == 265
    rezone = runner.invoke(app, ["load-pg", "zones", "--pg-url", pg_url, "--json"])
    assert json.loads(rezone.stdout)["skipped"] == 1


def test_libpq_pg_variables_are_the_target_when_pghost_is_set(
    mirror: Mirror, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from urllib.parse import urlsplit

    from tests.fixtures_pg import socket_dir

    monkeypatch.setenv("PGHOST", socket_dir(pg_url))
    monkeypatch.setenv("PGUSER", "postgres")
    monkeypatch.setenv("PGDATABASE", urlsplit(pg_url).path.lstrip("/"))
    mirror.add_file(GREEN_04)
    result = CliRunner().invoke(app, ["load-pg", "green", "2020-04", "--schema", "viaenv"])
    assert result.exit_code == 0, result.stderr
    assert "from PG* variables" in " ".join(result.stderr.split())
    with psycopg.connect(pg_url) as conn:
        assert count(conn, "viaenv.green_tripdata") == 35_612


def test_a_dropped_partition_is_reloaded_despite_the_ledger(pg_conn: psycopg.Connection) -> None:
    _load(pg_conn, GREEN_04, G04)
    pg_conn.execute("DROP TABLE green_tripdata_2020_04")  # someone removed the month
    again = _load(pg_conn, GREEN_04, G04)
    assert not again.skipped and again.rows == 35_612
    assert count(pg_conn, "green_tripdata") == 35_612
