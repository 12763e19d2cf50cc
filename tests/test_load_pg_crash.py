"""Crash safety and concurrency with the real CLI in subprocesses.

SIGKILL in the middle of a COPY leaves the previous content of the file exactly; two
concurrent loads of different months both land; two of the same month leave one copy.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.fixtures_mirror import Mirror
from tests.pg_helpers import CLI, count, wait_backends_gone, wait_for_copy

pytestmark = [pytest.mark.integration, pytest.mark.slow]
Y01, Y02 = "yellow_tripdata_2021-01.csv", "yellow_tripdata_2021-02.csv"


def _cli(*args: str, data_dir: str | None = None) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    if data_dir:
        env["TAXI_DATA_DIR"] = data_dir
    return subprocess.Popen([CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _run(*args: str, data_dir: str | None = None) -> None:
    proc = _cli(*args, data_dir=data_dir)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()


def test_sigkill_mid_copy_leaves_the_previous_content(
    mirror: Mirror, pg_url: str, tmp_path: Path
) -> None:
    mirror.add_month("yellow", "2021-01", rows=1_000, seed=1)
    _run("load-pg", "yellow", "2021-01", "--pg-url", pg_url, "-q", data_dir=str(tmp_path / "a"))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        before = conn.execute(
            "SELECT sha256 FROM taxi_cli_loads WHERE file = %s", (Y01,)
        ).fetchone()
        ids_before = conn.execute(
            "SELECT md5(string_agg(unique_row_id, ',' ORDER BY unique_row_id)) FROM yellow_tripdata"
        ).fetchone()

        # the month changes upstream: 300,000 rows this time
        mirror.add_month("yellow", "2021-01", rows=300_000, seed=2)
        big = str(tmp_path / "b")
        _run("extract", "yellow", "2021-01", "-q", data_dir=big)  # downloaded, verified
        proc = _cli("load-pg", "yellow", "2021-01", "--pg-url", pg_url, "-q", data_dir=big)
        try:
            in_flight = wait_for_copy(conn, proc)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL and in_flight > 0
        wait_backends_gone(conn)

        assert count(conn, "yellow_tripdata") == 1_000
        ids_after = conn.execute(
            "SELECT md5(string_agg(unique_row_id, ',' ORDER BY unique_row_id)) FROM yellow_tripdata"
        ).fetchone()
        assert ids_after == ids_before
        after = conn.execute("SELECT sha256 FROM taxi_cli_loads WHERE file = %s", (Y01,)).fetchone()
        assert after == before
        leftovers = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname LIKE '%\\_\\_load'"
        ).fetchone()
        assert leftovers == (0,)

        # the rerun completes: exactly the new content, once
        _run("load-pg", "yellow", "2021-01", "--pg-url", pg_url, "-q", data_dir=big)
        assert count(conn, "yellow_tripdata") == 300_000
        assert count(conn, "yellow_tripdata", f"filename = '{Y01}'") == 300_000


def test_concurrent_loads_of_different_and_of_the_same_month(mirror: Mirror, pg_url: str) -> None:
    mirror.add_month("yellow", "2021-01", rows=40_000, seed=3)
    mirror.add_month("yellow", "2021-02", rows=30_000, seed=4)
    _run("extract", "yellow", "2021-01,2021-02", "-q")

    procs = [
        _cli("load-pg", "yellow", month, "--pg-url", pg_url, "-q")
        for month in ("2021-01", "2021-02")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    with psycopg.connect(pg_url) as conn:
        by_file: dict[str, int] = dict(
            conn.execute("SELECT filename, count(*) FROM yellow_tripdata GROUP BY 1").fetchall()
        )
    assert by_file == {Y01: 40_000, Y02: 30_000}

    same = [
        _cli("load-pg", "yellow", "2021-01", "--pg-url", pg_url, "--force", "-q") for _ in range(2)
    ]
    for proc in same:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    with psycopg.connect(pg_url) as conn:
        assert count(conn, "yellow_tripdata", f"filename = '{Y01}'") == 40_000
        assert count(conn, "yellow_tripdata") == 70_000
