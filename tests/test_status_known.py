"""`status` marks totals that equal a published figure, and `--explain` names the trap."""

from __future__ import annotations

import io

from rich.console import Console
from typer.testing import CliRunner

from taxi_cli import figures, status
from taxi_cli.cli import app
from taxi_cli.console import Output
from taxi_cli.model import LedgerRow

runner = CliRunner()


def test_the_shipped_figures_are_consistent_and_name_their_source() -> None:
    known = figures.known()
    assert all(f.source for f in known)
    by = {(f.taxi, f.period, f.kind): f.value for f in known}
    # the per-file counts sum to the yearly answers (reference section 7)
    for taxi in ("yellow", "green"):
        months = sum(by[(taxi, f"2020-{m:02d}", "rows")] for m in range(1, 13))
        assert months == by[(taxi, "2020", "rows")]
    assert by[("yellow", "2020", "rows")] == 24_648_499
    assert by[("green", "2020", "rows")] == 1_734_051
    assert by[("yellow", "2021-03", "rows")] == 1_925_152
    assert by[("yellow", "2020-12", "uncompressed_bytes")] == 134_481_400
    assert round(134_481_400 / (1 << 20), 1) == 128.3  # the homework's MiB
    assert by[("green", "2020-04", "rows")] == 35_612
    assert by[("green", "2020-10", "rows")] == 95_120


def test_status_marks_a_known_year_and_month_and_flags_a_wrong_one() -> None:
    entries = []
    for m in range(1, 13):
        month = f"2020-{m:02d}"
        value = figures.of("green", month)
        assert value is not None
        rows = value.value - (1 if m == 4 else 0)  # one month is a row short
        file = f"green_tripdata_{month}.csv"
        entries.append(LedgerRow(file, "green", month, "a" * 64, rows, "done", None, None, None))
    report = status.build("pg", entries)
    known = {f["period"]: f for f in report.as_json()["known_figures"]}
    assert known["2020-01"] == {
        "taxi": "green",
        "period": "2020-01",
        "rows": 447_770,
        "known": 447_770,
        "matches": True,
    }
    assert known["2020-04"]["matches"] is False and known["2020-04"]["rows"] == 35_611
    assert known["2020"] == {
        "taxi": "green",
        "period": "2020",
        "rows": 1_734_050,
        "known": 1_734_051,
        "matches": False,
    }
    console = Console(file=io.StringIO(), width=200, color_system=None)
    out = Output(quiet=False, json=False)
    out.out = console
    status.render(report, out)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "447,770 ✓" in text
    assert "35,611 ✗ (published 35,612)" in text
    assert "1,734,050 ✗ (published 1,734,051)" in text
    assert "status --explain" in text


def test_explain_names_the_by_file_vs_by_pickup_date_trap() -> None:
    result = runner.invoke(app, ["status", "--explain"])
    assert result.exit_code == 0
    assert "24,648,499" in result.stdout and "2008 to 2062" in result.stdout
    assert "filename LIKE 'yellow_tripdata_2020-%'" in result.stdout
