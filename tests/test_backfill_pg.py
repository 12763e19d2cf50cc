"""`backfill --target pg` end to end: the real CLI, the mirror, an embedded PostgreSQL.

Checks the contracts scripts rely on: every month exactly once (row counts per file and
no duplicate row ids), a consistent ledger, a rerun that downloads and loads nothing,
a flaky mirror that still completes, a corrupt month recorded as failed with exit 4,
--fail-fast, catch-up, and SIGKILL / SIGTERM in the middle followed by a rerun.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from taxi_cli.catalog import month_range
from taxi_cli.cli import app
from tests.conftest import SHARED_DATA
from tests.fixtures_mirror import Mirror, rel_path

pytestmark = pytest.mark.integration

runner = CliRunner()
TAXI_CLI = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "taxi-cli"


def _backfill(pg_url: str, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["backfill", *args, "--target", "pg", "--pg-url", pg_url])
    return result.exit_code, result.stdout, result.stderr


def _rows_per_file(pg_url: str, taxi: str = "green") -> dict[str, int]:
    with psycopg.connect(pg_url) as conn:
        found = conn.execute(
            f"SELECT filename, count(*), count(DISTINCT unique_row_id) FROM {taxi}_tripdata "
            "GROUP BY filename ORDER BY filename"
        ).fetchall()
    for name, rows, distinct in found:
        assert rows == distinct, f"{name}: {rows - distinct} duplicate rows"
    return {name: rows for name, rows, _ in found}


def _ledger(pg_url: str) -> dict[str, tuple[str, int | None]]:
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT file, status, rows FROM taxi_cli_loads").fetchall()
    return {file: (status, count) for file, status, count in rows}


def _expected(months: list[str], rows: dict[str, int]) -> dict[str, int]:
    return {f"green_tripdata_{m}.csv": rows[m] for m in months}


def test_backfill_loads_each_month_once_and_a_rerun_does_nothing(
    mirror: Mirror, pg_url: str
) -> None:
    months = month_range("2020-01", "2020-04")
    sizes = {m: 150 + 10 * i for i, m in enumerate(months)}
    for month in months:
        mirror.add_month("green", month, rows=sizes[month])
    code, out, err = _backfill(pg_url, "green", "2020-01..2020-04", "--jobs", "2", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["done"] == 4 and summary["failed"] == 0
    assert summary["rows"] == sum(sizes.values())
    assert _rows_per_file(pg_url) == _expected(months, sizes)
    assert set(_ledger(pg_url).values()) == {("done", sizes[m]) for m in months}

    mirror.clear_log()
    code, out, err = _backfill(pg_url, "green", "2020-01..2020-04", "--json")
    assert code == 0, err
    assert json.loads(out)["skipped"] == 4
    assert mirror.gets() == []  # nothing downloaded
    # one HEAD per done month: is the release asset still the one that was loaded?
    assert sorted(r.path for r in mirror.requests()) == [rel_path("green", m) for m in months]
    assert _rows_per_file(pg_url) == _expected(months, sizes)

    status = runner.invoke(app, ["status", "--pg-url", pg_url, "--json"])
    assert status.exit_code == 0, status.stderr
    assert json.loads(status.stdout)["total_rows"] == sum(sizes.values())


def test_flaky_mirror_still_completes(mirror: Mirror, pg_url: str) -> None:
    months = month_range("2020-01", "2020-06")
    for month in months:
        mirror.add_month("green", month, rows=300)
    mirror.flaky(rate=0.6, seed=7, max_faults=2)
    code, out, err = _backfill(pg_url, "green", "2020-01..2020-06", "--jobs", "3", "-q")
    assert code == 0, err
    faults = [r for r in mirror.gets() if r.status >= 500 or r.sent < 0]
    drops = [r for r in mirror.gets() if r.status in (200, 206) and r.range is not None]
    assert faults or drops, "the seed injected no fault: the test proves nothing"
    assert _rows_per_file(pg_url) == _expected(months, dict.fromkeys(months, 300))


def test_corrupt_month_is_recorded_failed_and_exit_4(mirror: Mirror, pg_url: str) -> None:
    months = month_range("2020-01", "2020-03")
    for month in months:
        mirror.add_month("green", month, rows=120)
    mirror.serve_html(rel_path("green", "2020-02"))
    code, out, err = _backfill(pg_url, "green", "2020-01..2020-03", "--json")
    assert code == 4, err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("taxi-cli: error: 1 of 3 partitions failed (first: green 2020-02 -> pg: ")
    )
    states = {p["month"]: p["state"] for p in json.loads(out)["partitions"]}
    assert states == {"2020-01": "done", "2020-02": "failed", "2020-03": "done"}
    ledger = _ledger(pg_url)
    assert ledger["green_tripdata_2020-02.csv"][0] == "failed"
    assert _rows_per_file(pg_url) == _expected(["2020-01", "2020-03"], dict.fromkeys(months, 120))

    # The default leaves a failed month alone (and says so); --reprocess failed retries it.
    mirror.serve_html(rel_path("green", "2020-02"), times=0)
    code, out, err = _backfill(pg_url, "green", "2020-01..2020-03", "--json")
    assert code == 0 and json.loads(out)["failed"] == 0
    assert json.loads(out)["failed_before_skipped"] == 1
    code, out, err = _backfill(pg_url, "green", "2020-01..2020-03")
    assert "1 partition(s) that failed before were left alone" in " ".join(out.split())
    code, out, err = _backfill(
        pg_url, "green", "2020-01..2020-03", "--reprocess", "failed", "--json"
    )
    assert code == 0, err
    assert _rows_per_file(pg_url) == _expected(months, dict.fromkeys(months, 120))
    assert _ledger(pg_url)["green_tripdata_2020-02.csv"] == ("done", 120)


def test_fail_fast_stops_after_the_first_failure(mirror: Mirror, pg_url: str) -> None:
    months = month_range("2020-01", "2020-05")
    for month in months:
        mirror.add_month("green", month, rows=100)
    mirror.remove(rel_path("green", "2020-01"))  # a 404: fails without retries
    code, out, err = _backfill(
        pg_url, "green", "2020-01..2020-05", "--jobs", "1", "--fail-fast", "--json"
    )
    assert code == 4, err
    states = [p["state"] for p in json.loads(out)["partitions"]]
    assert states[0] == "failed"
    assert "not run" in states  # stopped before the end
    assert len(mirror.gets()) < len(months)


def test_catch_up_loads_only_the_new_months(mirror: Mirror, pg_url: str) -> None:
    for month in month_range("2020-01", "2020-06"):
        mirror.add_month("green", month, rows=80)
    code, _, err = _backfill(pg_url, "green", "2020-01..2020-03")
    assert code == 0, err
    mirror.clear_log()
    code, out, err = _backfill(pg_url, "green", "--catch-up", "--json")
    assert code == 0, err
    done = [p["month"] for p in json.loads(out)["partitions"] if p["state"] == "done"]
    assert done == ["2020-04", "2020-05", "2020-06"]
    fetched = sorted({r.path for r in mirror.gets()})
    assert fetched == [rel_path("green", m) for m in ("2020-04", "2020-05", "2020-06")]
    heads = sorted(r.path for r in mirror.requests(method="HEAD"))
    # the done months' versions (drift), then the probes up to the first 404
    assert heads == [rel_path("green", m) for m in month_range("2020-01", "2020-07")]
    months = month_range("2020-01", "2020-06")
    assert _rows_per_file(pg_url) == _expected(months, dict.fromkeys(months, 80))

    # The next scheduled run finds nothing new.
    code, out, err = _backfill(pg_url, "green", "--catch-up", "--json")
    assert code == 0 and json.loads(out)["done"] == 0


def _run_cli(pg_url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(TAXI_CLI), "backfill", *args, "--target", "pg", "--pg-url", pg_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_first_done(pg_url: str, proc: subprocess.Popen[str]) -> None:
    """Until the ledger shows one committed month (the run is mid-way), or it ended."""
    for _ in range(600):
        if proc.poll() is not None:
            return
        try:
            if any(s == "done" for s, _ in _ledger(pg_url).values()):
                return
        except psycopg.errors.UndefinedTable:
            pass
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_backfill_is_finished_by_a_rerun(
    mirror: Mirror, pg_url: str, sig: signal.Signals
) -> None:
    months = month_range("2020-01", "2020-08")
    for month in months:
        mirror.add_month("green", month, rows=20_000)
    args = ("green", "2020-01..2020-08", "--jobs", "2", "-q")
    proc = _run_cli(pg_url, *args)
    _wait_for_first_done(pg_url, proc)
    assert proc.poll() is None, "the run ended before it could be killed: make months bigger"
    # While it runs, a second backfill into the same database and schema is refused.
    code, _, err = _backfill(pg_url, "green", "2020-09")
    assert code == 1
    assert err.startswith("taxi-cli: error: another backfill into ")
    assert f"is running (pid {proc.pid} on " in err
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGTERM:
        assert proc.returncode == 130, err
        assert err.strip().splitlines()[-1] == "taxi-cli: interrupted"
    else:
        assert proc.returncode == -signal.SIGKILL
    partial = _rows_per_file(pg_url)
    assert 1 <= len(partial) < len(months)
    assert all(rows == 20_000 for rows in partial.values())  # committed months are whole

    rerun = _run_cli(pg_url, *args, "--json")
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert json.loads(out)["skipped"] == len(partial)
    assert _rows_per_file(pg_url) == _expected(months, dict.fromkeys(months, 20_000))
    ledger = _ledger(pg_url)
    assert ledger == {f"green_tripdata_{m}.csv": ("done", 20_000) for m in months}


def test_json_log_events_and_quiet(mirror: Mirror, pg_url: str) -> None:
    for month in ("2020-01", "2020-02"):
        mirror.add_month("green", month, rows=90)
    code, out, err = _backfill(pg_url, "green", "2020-01..2020-02", "--log-format", "json")
    assert code == 0, err
    events = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert events, "no events on stderr"
    plan = next(e for e in events if e["event"].startswith("plan:"))
    assert [p["action"] for p in plan["plan"]] == ["load", "load"]
    done = [e for e in events if e.get("state") == "done"]
    assert sorted((e["partition"], e["rows"]) for e in done) == [
        ("green 2020-01 -> pg", 90),
        ("green 2020-02 -> pg", 90),
    ]
    assert "backfill summary" in out  # the result stays on stdout

    code, out, err = _backfill(pg_url, "green", "2020-01..2020-02", "-q")
    assert code == 0
    assert err == ""  # -q: only errors, and there are none
    assert "skipped" in out


def test_real_release_files_and_status_totals(mirror: Mirror, pg_url: str) -> None:
    """The real green 2020-04 and 2020-10 release files (verified against the shipped
    manifest): status totals are the release's row counts (reference section 7)."""
    for name in ("green_tripdata_2020-04.csv.gz", "green_tripdata_2020-10.csv.gz"):
        mirror.add_file(SHARED_DATA / "real" / name, manifest=False)
    code, out, err = _backfill(pg_url, "green", "2020-04,2020-10", "--json")
    assert code == 0, err
    status = runner.invoke(app, ["status", "--pg-url", pg_url, "--json"])
    report = json.loads(status.stdout)
    cells = {p["month"]: p for p in report["partitions"] if p["state"] == "done"}
    assert {m: c["rows"] for m, c in cells.items()} == {"2020-04": 35_612, "2020-10": 95_120}
    (total,) = report["totals"]
    assert (total["rows"], total["done"], total["missing"]) == (35_612 + 95_120, 2, 5)


def test_lost_database_connection_is_retried(mirror: Mirror, pg_url: str) -> None:
    """The server kills a loader's connection mid-COPY: that month is retried, and the
    run still ends with every month exactly once."""
    months = month_range("2020-01", "2020-04")
    for month in months:
        mirror.add_month("green", month, rows=20_000)
    proc = _run_cli(pg_url, "green", "2020-01..2020-04", "--jobs", "1", "--json")
    killed: list[int] = []
    with psycopg.connect(pg_url, autocommit=True) as admin:
        for _ in range(1200):
            if proc.poll() is not None:
                break
            found = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND query ILIKE 'COPY%'"
            ).fetchall()
            if found:
                admin.execute("SELECT pg_terminate_backend(%s)", (found[0][0],))
                killed.append(found[0][0])
                break
            time.sleep(0.02)
    out, err = proc.communicate(timeout=300)
    assert killed, "no COPY was seen to kill: the test proves nothing"
    assert proc.returncode == 0, err
    assert "retrying" in err
    summary = json.loads(out)
    assert summary["done"] == 4
    assert max(p["attempts"] for p in summary["partitions"]) == 2
    assert _rows_per_file(pg_url) == _expected(months, dict.fromkeys(months, 20_000))


def test_merge_mode_with_parallel_workers_and_reprocess_all(mirror: Mirror, pg_url: str) -> None:
    months = month_range("2020-01", "2020-04")
    for month in months:
        mirror.add_month("green", month, rows=500)
    expected = _expected(months, dict.fromkeys(months, 500))
    code, out, err = _backfill(pg_url, "green", "2020-01..2020-04", "--mode", "merge", "-j", "3")
    assert code == 0, err
    assert _rows_per_file(pg_url) == expected
    code, out, err = _backfill(
        pg_url, "green", "2020-01..2020-04", "--mode", "merge", "--reprocess", "all", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["done"] == 4  # reloaded: the MERGE inserts nothing new
    assert _rows_per_file(pg_url) == expected
