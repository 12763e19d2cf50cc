"""The report where dbt has built the mart: revenue by borough and the top zones are
charted too, equal to the mart's own sums, and every chart renders in Chromium."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taxi_cli.cli import app
from tests.test_report_pg import _chromium
from tests.test_transform import Run, query, warehouse

pytestmark = pytest.mark.integration
__all__ = ["warehouse"]  # the module's real months + zones + dbt build, reused


def test_the_report_charts_revenue_from_the_mart(
    warehouse: tuple[str, list[Run]], tmp_path: Path
) -> None:
    url, runs = warehouse
    assert runs[0].exit_code == 0
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "--pg-url", url, "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    document = out.read_text()
    assert document.count("<svg") == 4
    assert "revenue by pickup borough" in document and "top pickup zones by revenue" in document
    top_zone = query(
        url,
        "SELECT revenue_zone FROM dm_monthly_zone_revenue GROUP BY 1 "
        "ORDER BY sum(revenue_monthly_total_amount) DESC LIMIT 1",
    )[0][0]
    assert re.search(rf">{re.escape(top_zone)}<", document)  # a label of the zones chart

    md = tmp_path / "report.md"
    result = CliRunner().invoke(
        app, ["report", "--pg-url", url, "--out", str(md), "--format", "md"]
    )
    assert result.exit_code == 0, result.stderr
    boroughs = query(
        url, "SELECT pickup_borough, sum(total_amount)::float8 FROM fact_trips GROUP BY 1"
    )
    text = md.read_text()
    for name, total in boroughs:
        assert f"| {name} | {total:,.2f} |" in text

    dom = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            out.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-charts="4"' in dom.stdout
    assert [line for line in dom.stderr.splitlines() if "CONSOLE" in line] == []
