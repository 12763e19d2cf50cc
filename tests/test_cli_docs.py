"""Every command the CLI registers is documented: help text, option help, README usage.

Data-driven: it walks whatever commands and groups are registered when it runs, so a
command added later is covered without editing this file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from taxi_cli.cli import app

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
ROOT: Any = typer.main.get_command(app)


def _walk(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = []
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        found.append((path, command))
        if hasattr(command, "commands"):
            found.extend(_walk(command, path))
    return found


COMMANDS = _walk(ROOT)
IDS = [" ".join(path) for path, _ in COMMANDS]


def test_the_cli_registers_commands() -> None:
    assert ("config", "show") in {path for path, _ in COMMANDS}
    assert {"extract", "config"} <= set(ROOT.commands)


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_command_has_help_text(path: tuple[str, ...], command: Any) -> None:
    assert (command.help or "").strip(), f"`taxi-cli {' '.join(path)}` has no help text"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_every_option_has_help(path: tuple[str, ...], command: Any) -> None:
    missing = [
        param.opts[0]
        for param in command.params
        if isinstance(param, typer.core.TyperOption)
        and not param.hidden
        and not (param.help or "").strip()
    ]
    assert not missing, f"`taxi-cli {' '.join(path)}`: options without help: {missing}"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_command_appears_in_the_readme(path: tuple[str, ...], command: Any) -> None:
    # `taxi-cli [global options] PATH`, e.g. `taxi-cli --profile prod config show`
    global_opts = r"(?:\s+--[\w-]+(?:[ =](?!-)[^\s`]+)?)*"
    pattern = r"taxi-cli" + global_opts + r"\s+" + r"\s+".join(map(re.escape, path)) + r"\b"
    assert re.search(pattern, README), f"README never shows `taxi-cli {' '.join(path)}`"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_help_renders(path: tuple[str, ...], command: Any) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: taxi-cli " + " ".join(path) in " ".join(result.stdout.split())


def test_root_help_lists_every_command_and_the_exit_codes() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ROOT.commands:
        assert name in result.stdout
    assert "Exit codes" in result.stdout
