"""Shared checks of the fault suite: the one error line, what is left on disk."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import Result
from typer.testing import CliRunner

from taxi_cli.cli import app

runner = CliRunner()


def cli(*args: str) -> Result:
    return runner.invoke(app, list(args))


def data_dir() -> Path:
    return Path(os.environ["TAXI_DATA_DIR"])


def final_path(taxi: str, month: str) -> Path:
    return data_dir() / taxi / f"{taxi}_tripdata_{month}.csv.gz"


def part_path(taxi: str, month: str) -> Path:
    final = final_path(taxi, month)
    return final.with_name(final.name + ".part")


def error_line(result: Result) -> str:
    """The one `taxi-cli: error:` line; no traceback anywhere in the output."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("taxi-cli: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
