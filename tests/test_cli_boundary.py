"""The one error boundary: TaxiError -> one stderr line and its exit code; stdout stays clean."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from taxi_cli.cli import app, reports_errors
from taxi_cli.errors import (
    ConfigError,
    ConnectError,
    DataError,
    ExitCode,
    LockedError,
    PartialFailure,
    TaxiError,
    UsageError,
)

runner = CliRunner()


def _app_raising(exc: BaseException) -> typer.Typer:
    probe = typer.Typer()

    @probe.command()
    @reports_errors
    def boom() -> None:
        raise exc

    @probe.command()
    def other() -> None:  # a second command keeps `boom` a named subcommand
        pass

    return probe


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (DataError("green_tripdata_2020-04.csv.gz line 7: 3 fields, expected 20"), 1),
        (UsageError("bad month '2020-13'"), 2),
        (ConfigError("unknown profile 'prd'"), 2),
        (ConnectError("cannot connect to postgresql://u:hunter2@db:5432/x"), 3),
        (LockedError("a backfill is running"), 1),
        (PartialFailure("2 of 10 partitions failed"), 4),
    ],
)
def test_taxi_errors_map_to_exit_codes(exc: TaxiError, code: int) -> None:
    result = runner.invoke(_app_raising(exc), ["boom"])
    assert result.exit_code == code == int(exc.exit_code)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("taxi-cli: error: ")


def test_passwords_are_masked_in_error_messages() -> None:
    exc = ConnectError("cannot connect to postgresql://u:hunter2@db:5432/x")
    result = runner.invoke(_app_raising(exc), ["boom"])
    assert "hunter2" not in result.stderr
    assert "postgresql://u:***@db:5432/x" in result.stderr


def test_keyboard_interrupt_exits_130() -> None:
    result = runner.invoke(_app_raising(KeyboardInterrupt()), ["boom"])
    assert result.exit_code == ExitCode.INTERRUPTED.value == 130
    assert "interrupted" in result.stderr


def test_unexpected_exceptions_are_bugs_and_keep_their_traceback() -> None:
    result = runner.invoke(_app_raising(RuntimeError("bug")), ["boom"])
    assert isinstance(result.exception, RuntimeError)
    assert result.exit_code == 1


def test_version_and_help() -> None:
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0
    assert version.stdout.startswith("taxi-cli ")
    helped = runner.invoke(app, ["--help"])
    assert helped.exit_code == 0
    assert "Exit codes" in helped.stdout


def test_every_registered_command_has_the_error_boundary() -> None:
    import typer

    def commands(group: object) -> list[object]:
        found = []
        for command in getattr(group, "commands", {}).values():
            found.extend(commands(command) if hasattr(command, "commands") else [command])
        return found

    found = commands(typer.main.get_command(app))
    assert len(found) >= 10
    missing = [c.name for c in found if not getattr(c.callback, "error_boundary", False)]  # type: ignore[attr-defined]
    assert missing == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["backfill", "green", "2020-01", "--target", "s3"], "Invalid value for '--target'"),
        (["backfill", "green", "2020-13"], "bad month '2020-13'"),
        (["load-pg", "green", "2020-04", "--jobs", "0"], "Invalid value for '--jobs'"),
    ],
)
def test_with_json_logs_even_a_usage_error_is_one_json_line(args: list[str], needle: str) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("taxi-cli")
    done = subprocess.run(
        [str(exe), *args, "--log-format", "json"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    event = json.loads(line)
    assert event["level"] == "error" and event["exit_code"] == 2 and needle in event["event"]
