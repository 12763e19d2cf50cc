"""`--mode merge` is exactly once whatever `--jobs`: concurrent merges of files that
share row ids (backfill workers, or separate processes) end with each id inserted once,
into the tool's own partitioned table and into a plain table made by the course's flow."""

from __future__ import annotations

import gzip
from pathlib import Path

import psycopg
import pytest

from taxi_cli import synthetic
from taxi_cli.catalog import GREEN
from tests.faults.db_support import cli, finish, start
from tests.fixtures_mirror import Mirror

pytestmark = [pytest.mark.integration]
ROWS, SHARED = 60_000, 30_000


def _serve_overlapping(mirror: Mirror, tmp_path: Path) -> None:
    """2020-01 holds rows [0, ROWS), 2020-02 rows [ROWS - SHARED, 2 ROWS - SHARED):
    SHARED rows, and so their row ids, are in both files."""
    plain = tmp_path / "rows.csv"
    synthetic.write_month(plain, "green", "2020-01", 2 * ROWS - SHARED, gzip_it=False, seed=3)
    header, *rows = plain.read_text().splitlines(keepends=True)
    for month, part in (("2020-01", rows[:ROWS]), ("2020-02", rows[ROWS - SHARED :])):
        data = gzip.compress((header + "".join(part)).encode(), mtime=0)
        mirror.add_bytes(f"/green/{GREEN.file_name(month)}", data)


def _course_table(conn: psycopg.Connection) -> None:
    columns = ", ".join(f"{c.name} {c.pg_type}" for c in GREEN.columns)
    conn.execute(f"CREATE TABLE green_tripdata (unique_row_id text, filename text, {columns})")


def _expected_ids(pg_url: str) -> int:
    """The distinct row ids of both files, as PostgreSQL counts them (a replace load of
    each into a schema of its own, one after the other)."""
    for month in ("2020-01", "2020-02"):
        run = cli("load-pg", "green", month, "--pg-url", pg_url, "--schema", "oracle", "-q")
        assert run.code == 0, run.err
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT count(DISTINCT unique_row_id) FROM oracle.green_tripdata")
        found = row.fetchone()
    assert found is not None and found[0] == 2 * ROWS - SHARED  # the files' ids are distinct
    return int(found[0])


def _each_id_once(pg_url: str, expected: int) -> None:
    with psycopg.connect(pg_url) as conn:
        total, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT unique_row_id) FROM public.green_tripdata"
        ).fetchone() or (0, 0)
    assert (total, distinct) == (expected, expected)


@pytest.mark.parametrize("table", ["partitioned", "course"])
def test_backfill_merge_with_parallel_workers(
    mirror: Mirror, pg_url: str, tmp_path: Path, table: str
) -> None:
    _serve_overlapping(mirror, tmp_path)
    expected = _expected_ids(pg_url)  # also leaves both files verified in the cache
    if table == "course":
        with psycopg.connect(pg_url, autocommit=True) as conn:
            _course_table(conn)
    for _ in range(2):  # the second run (--reprocess all) must not add a row either
        run = cli(
            "backfill", "green", "2020-01..2020-02", "--mode", "merge", "-j", "2",
            "--pg-url", pg_url, "--reprocess", "all", "-q",
        )  # fmt: skip
        assert run.code == 0, run.err
        _each_id_once(pg_url, expected)


@pytest.mark.parametrize("table", ["partitioned", "course"])
def test_concurrent_load_pg_merges(mirror: Mirror, pg_url: str, tmp_path: Path, table: str) -> None:
    _serve_overlapping(mirror, tmp_path)
    expected = _expected_ids(pg_url)
    if table == "course":
        with psycopg.connect(pg_url, autocommit=True) as conn:
            _course_table(conn)
    procs = [
        start("load-pg", "green", month, "--mode", "merge", "--pg-url", pg_url, "-q")
        for month in ("2020-01", "2020-02", "2020-01", "2020-02")
    ]
    for proc in procs:
        run = finish(proc, timeout=300)
        assert run.code == 0, run.err
    _each_id_once(pg_url, expected)
