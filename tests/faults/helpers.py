"""Shared checks of the fault suite: the one error line, what is left on disk."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from typer.testing import CliRunner, Result

from taxi_cli.cli import app

runner = CliRunner()
# CliRunner captures sys.stderr process-wide, so a test server thread's report of a client
# that hung up (socketserver.BaseServer.handle_error) lands there too: not ours
_SERVER_NOISE = re.compile(
    r"-{40}\nException occurred during processing of request from .*?\n-{40}\n?", re.S
)


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
    ours = _SERVER_NOISE.sub("", result.stderr + result.stdout)
    assert "Traceback" not in ours, ours
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("taxi-cli: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


TAXI_CLI = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "taxi-cli"
IS_ROOT = os.geteuid() == 0
# root ignores file modes: drop the capabilities that let it, so EACCES is real
AS_UNPRIVILEGED = (
    [
        "setpriv",
        "--inh-caps=-dac_override,-dac_read_search,-fowner",
        "--bounding-set=-dac_override,-dac_read_search,-fowner",
        "--",
    ]
    if IS_ROOT
    else []
)


def run_cli(
    *args: str, prefix: Sequence[str] = (), preexec: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    """`.venv/bin/taxi-cli ARGS` in a subprocess (the environment is this test's)."""
    return subprocess.run(
        [*prefix, str(TAXI_CLI), *args],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=preexec,
        check=False,
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("taxi-cli: error:")]
    assert len(lines) == 1, done.stderr
    return lines[0]
