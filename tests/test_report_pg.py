"""`runs` and `report --target pg` for the real green months, and the report opened in a
real browser: Debian's headless Chromium (`make browser` installs it) renders every
chart with data and logs no console error; a screenshot is kept in the test's tmp dir."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taxi_cli.cli import app
from taxi_cli.runs import command_line
from tests.fixtures_mirror import Mirror
from tests.pg_helpers import GREEN_04, GREEN_10

pytestmark = pytest.mark.integration
runner = CliRunner()


def test_command_lines_are_recorded_with_secrets_masked() -> None:
    argv = [
        "/usr/bin/taxi-cli",
        "backfill",
        "green",
        "2020",
        "--pg-url",
        "postgresql://etl:s3cret@db/taxi",
        "--gcp-key=abc",
        "--token",
        "xyz",
    ]
    shown = command_line(argv)
    assert shown == (
        "taxi-cli backfill green 2020 --pg-url postgresql://etl:***@db/taxi --gcp-key=*** "
        "--token ***"
    )
    assert "s3cret" not in shown and "abc" not in shown and "xyz" not in shown


@pytest.fixture
def loaded(mirror: Mirror, pg_url: str) -> str:
    mirror.add_file(GREEN_04)
    mirror.add_file(GREEN_10)
    result = runner.invoke(
        app, ["backfill", "green", "2020-04,2020-10", "--target", "pg", "--pg-url", pg_url]
    )
    assert result.exit_code == 0, result.stderr
    result = runner.invoke(app, ["load-pg", "green", "2020-04", "--pg-url", pg_url])
    assert result.exit_code == 0, result.stderr
    return pg_url


def test_runs_lists_the_past_runs(loaded: str) -> None:
    result = runner.invoke(app, ["runs", "--pg-url", loaded, "--json"])
    assert result.exit_code == 0, result.stderr
    runs = json.loads(result.stdout)["runs"]
    assert [(r["label"], r["done"], r["skipped"], r["failed"]) for r in runs] == [
        ("load-pg", 0, 1, 0),  # newest first: the rerun found it done
        ("backfill", 2, 0, 0),
    ]
    assert runs[1]["rows"] == 35_612 + 95_120 and runs[1]["status"] == "ok"
    sizes = GREEN_04.stat().st_size + GREEN_10.stat().st_size
    assert (runs[1]["downloaded_bytes"], runs[0]["downloaded_bytes"]) == (sizes, 0)
    assert runs[1]["started"] <= runs[1]["finished"] <= runs[0]["started"]
    text = runner.invoke(app, ["runs", "--pg-url", loaded])
    assert text.exit_code == 0 and "130,732" in text.stdout


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("headless Chromium is needed for the report test: run `make browser`")
    return found


def test_the_report_renders_every_chart_in_chromium(loaded: str, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", "--pg-url", loaded, "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    document = out.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", document)  # offline
    assert document.count("<svg") == 2  # heat map and rows vs published (no mart yet)
    assert "green 2020-04 rows" in document and "35,612" in document  # the figures table
    assert "null passenger count" in document  # the checks table
    assert "backfill" in document  # the run history

    browser = _chromium()
    profile = tmp_path / "profile"
    common = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1280,2400",
    ]
    dom = subprocess.run(
        [*common, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-charts="2"' in dom.stdout  # both charts rendered with their data
    assert dom.stdout.count("<svg") == 2
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console
    shot = tmp_path / "report.png"
    done = subprocess.run(
        [*common, f"--screenshot={shot}", out.as_uri()], capture_output=True, timeout=120
    )
    assert done.returncode == 0
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000

    md = tmp_path / "report.md"
    result = runner.invoke(app, ["report", "--pg-url", loaded, "--out", str(md), "--format", "md"])
    assert result.exit_code == 0, result.stderr
    text = md.read_text()
    assert text.startswith("## taxi-cli report: pg")
    assert "| green 2020-10 | done | 95,120 | 95,120 |" in text
