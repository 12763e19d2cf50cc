"""`make run` (taxi_cli.demo) end to end, and the stdlib release mirror it can fall back on."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys

import httpx
import psycopg
import pytest

from taxi_cli.catalog import GREEN
from taxi_cli.mirror import Mirror as LocalMirror
from tests.conftest import SHARED_DATA
from tests.fixtures_mirror import REAL, Mirror

MONTHS = ("2020-04", "2020-10")


def csv_rows(month: str) -> int:
    """Data rows of a real release file, counted independently of taxi-cli."""
    with gzip.open(REAL / GREEN.file_name(month), "rb") as src:
        return sum(1 for _ in src) - 1


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taxi_cli.demo", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=600,
        check=False,
    )


def test_local_mirror_serves_release_names_from_flat_folders() -> None:
    with LocalMirror([REAL, SHARED_DATA]) as served:
        base = served.url
        with httpx.Client(timeout=10) as client:
            month = client.get(f"{base}/green/{GREEN.file_name('2020-04')}")
            zones = client.head(f"{base}/misc/taxi_zone_lookup.csv")
            other = client.get(f"{base}/green/green_head.csv")
            head = client.get(f"{base}/yellow/yellow_tripdata_2020-01.csv")  # a partial copy
            missing = client.get(f"{base}/green/{GREEN.file_name('2020-05')}")
    assert month.status_code == 200
    assert month.content == (REAL / GREEN.file_name("2020-04")).read_bytes()
    assert zones.status_code == 200
    assert (
        int(zones.headers["content-length"])
        == (SHARED_DATA / "taxi_zone_lookup.csv").stat().st_size
    )
    assert other.status_code == head.status_code == 404  # only release assets are served
    assert missing.status_code == 404


def test_demo_offline_says_so_in_one_line_and_exits_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAXI_SOURCE_URL", "http://127.0.0.1:9/releases/download")
    # a set TAXI_SOURCE_URL is honoured even with --local-mirror: no silent substitution
    result = demo("--local-mirror", str(REAL))
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "http://127.0.0.1:9/releases/download is unreachable" in lines[0]
    assert "TAXI_SOURCE_URL" in lines[0] and "python -m taxi_cli.mirror" in lines[0]
    assert result.stdout == ""


@pytest.mark.integration
def test_demo_runs_the_whole_job(
    pg_url: str, mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAXI_PG_URL", pg_url)
    for month in MONTHS:
        mirror.add_file(REAL / GREEN.file_name(month))
    mirror.add_zones()
    result = demo()
    assert result.returncode == 0, result.stderr[-3000:]
    for step in ("extract zones", "load-pg green 2020-04,2020-10", "transform", "status"):
        assert f"$ taxi-cli {step}" in result.stderr
    with psycopg.connect(pg_url) as conn:
        loaded: dict[str, int] = dict(
            conn.execute("SELECT filename, count(*) FROM green_tripdata GROUP BY 1").fetchall()
        )
        top = conn.execute(
            "SELECT revenue_zone, total_monthly_trips FROM dm_monthly_zone_revenue "
            "ORDER BY revenue_monthly_total_amount DESC, revenue_zone LIMIT 1"
        ).fetchone()
    # every line of both real files is loaded, and the mart's top row is printed
    assert loaded == {GREEN.csv_name(m): csv_rows(m) for m in MONTHS}
    assert top is not None
    assert "top 10 of dm_monthly_zone_revenue" in result.stdout
    assert top[0] in result.stdout and f"{top[1]:,}" in result.stdout
    assert f"{sum(loaded.values()):,}" in result.stdout  # status's total
