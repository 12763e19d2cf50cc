"""SIGTERM or SIGINT in any command exits 130 by itself (within a bound, not a timing
claim), rolls back what was in flight and leaves nothing locked: no backend, no
advisory lock, no held run lock; the same command then runs to the end."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psycopg
import pytest

from taxi_cli.choices import TargetName
from taxi_cli.config import load_settings
from taxi_cli.destinations import lock_name, make
from taxi_cli.lock import RunLock, lock_path
from tests.faults.db_support import cli, interrupt, start
from tests.fixtures_mirror import Mirror, rel_path
from tests.pg_helpers import wait_backends_gone, wait_for_copy

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SIGNALS = [signal.SIGTERM, signal.SIGINT]


def _nothing_left(conn: psycopg.Connection) -> None:
    """No other session is left in the database, and so no lock of any kind."""
    wait_backends_gone(conn)
    locks = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' OR "
        "(pid <> pg_backend_pid() AND database = (SELECT oid FROM pg_database "
        "WHERE datname = current_database()))"
    ).fetchone()
    assert locks == (0,)


def _content(conn: psycopg.Connection) -> object:
    return conn.execute(
        "SELECT count(*), md5(string_agg(unique_row_id, ',' ORDER BY unique_row_id)), "
        "(SELECT string_agg(file || ':' || status || ':' || rows, ',' ORDER BY file) "
        " FROM taxi_cli_loads) FROM green_tripdata"
    ).fetchone()


def _interrupted(run: object) -> None:
    from tests.faults.db_support import Run

    assert isinstance(run, Run)
    assert run.code == 130, run.err
    assert "Traceback" not in run.err and "interrupted" in run.err


@pytest.mark.parametrize("sig", SIGNALS, ids=["SIGTERM", "SIGINT"])
def test_load_pg_mid_copy(  # type: ignore[no-untyped-def]
    mirror: Mirror, pg_url: str, pg_conn: psycopg.Connection, tmp_path: Path, sig
) -> None:
    mirror.add_month("green", "2020-01", rows=500, seed=1)
    assert cli("load-pg", "green", "2020-01", "--pg-url", pg_url, "-q").code == 0
    before = _content(pg_conn)
    mirror.add_month("green", "2020-01", rows=400_000, seed=2)
    grown = {"TAXI_DATA_DIR": str(tmp_path / "grown")}
    assert cli("extract", "green", "2020-01", "-q", env=grown).code == 0
    proc = start("load-pg", "green", "2020-01", "--pg-url", pg_url, env=grown)
    wait_for_copy(pg_conn, proc)
    _interrupted(interrupt(proc, sig))
    _nothing_left(pg_conn)
    assert _content(pg_conn) == before
    assert cli("load-pg", "green", "2020-01", "--pg-url", pg_url, "-q", env=grown).code == 0
    assert pg_conn.execute("SELECT count(*) FROM green_tripdata").fetchone() == (400_000,)


@pytest.mark.parametrize("sig", SIGNALS, ids=["SIGTERM", "SIGINT"])
def test_backfill_with_workers_mid_copy(  # type: ignore[no-untyped-def]
    mirror: Mirror, pg_url: str, pg_conn: psycopg.Connection, sig
) -> None:
    for month in ("2020-01", "2020-02", "2020-03"):
        mirror.add_month("green", month, rows=300_000, seed=4)
    assert cli("extract", "green", "2020-01..2020-03", "-q").code == 0
    proc = start("backfill", "green", "2020-01..2020-03", "--pg-url", pg_url, "-j", "2")
    wait_for_copy(pg_conn, proc)
    _interrupted(interrupt(proc, sig))
    _nothing_left(pg_conn)
    # whatever committed before the signal is done in full; nothing else is there
    done: dict[str, int] = dict(
        pg_conn.execute("SELECT file, rows FROM taxi_cli_loads WHERE status = 'done'").fetchall()
    )
    per_file: dict[str, int] = dict(
        pg_conn.execute("SELECT filename, count(*) FROM green_tripdata GROUP BY 1").fetchall()
    )
    assert per_file == done
    cfg = load_settings({"pg_url": pg_url})
    with RunLock(lock_path(cfg, lock_name(make(cfg, TargetName.PG)[0])), what="test"):
        pass  # the run lock is free at once
    run = cli("backfill", "green", "2020-01..2020-03", "--pg-url", pg_url, "-q")
    assert run.code == 0, run.err
    assert pg_conn.execute("SELECT count(*) FROM green_tripdata").fetchone() == (900_000,)


@pytest.mark.parametrize("sig", SIGNALS, ids=["SIGTERM", "SIGINT"])
def test_extract_mid_download(mirror: Mirror, tmp_path: Path, sig) -> None:  # type: ignore[no-untyped-def]
    mirror.add_month("green", "2020-01", rows=20_000, seed=1)
    mirror.stall(rel_path("green", "2020-01"), after=50_000, seconds=60)
    proc = start("extract", "green", "2020-01")
    deadline = time.monotonic() + 60
    downloads = Path(os.environ["TAXI_DATA_DIR"])
    while not list(downloads.glob("**/green_tripdata_2020-01.csv.gz*")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    _interrupted(interrupt(proc, sig))
    run = cli("extract", "green", "2020-01", "-q")  # resumes or restarts, and completes
    assert run.code == 0, run.err
