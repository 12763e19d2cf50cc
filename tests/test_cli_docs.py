"""Every command the CLI registers is documented: help text, option help, README usage.

Data-driven: it walks whatever commands and groups are registered when it runs, so a
command added later is covered without editing this file.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from taxi_cli.cli import app

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
# Any: typer vendors click as the private `typer._click`, so its command types are not public.
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


GLOBAL_WITH_VALUE = {"--config", "--profile"}


def check_call(argv: list[str]) -> str | None:
    """Why `taxi-cli ARGV` would be refused for an unknown command or option, else None."""
    words = list(argv)
    while words and words[0].startswith("-"):  # global options come first
        opt = words.pop(0).split("=", 1)[0]
        if opt not in {*GLOBAL_WITH_VALUE, "--version", "--help"}:
            return f"unknown global option {opt}"
        if opt in GLOBAL_WITH_VALUE and "=" not in opt and words:
            words.pop(0)
    command: Any = ROOT
    path: list[str] = []
    while hasattr(command, "commands") and words and not words[0].startswith("-"):
        name = words.pop(0)
        if name not in command.commands:
            return f"no command {' '.join([*path, name])!r}"
        command = command.commands[name]
        path.append(name)
    if not path:
        return "no command"
    opts = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for word in words:
        if word == "--":  # the rest goes to another program (dbt build)
            break
        if word.startswith("-") and word != "-" and not word.startswith("-$"):
            opt = word.split("=", 1)[0]
            if opt not in opts and opt != "--help":
                return f"`taxi-cli {' '.join(path)}` has no option {opt}"
    return None


def _first_word(argv: list[str]) -> str:
    """The command name: the first word after the global options and their values."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in GLOBAL_WITH_VALUE:
            skip = True
        elif not word.startswith("-"):
            return word
    return ""


def _readme_calls() -> list[list[str]]:
    """Every `taxi-cli ...` invocation in the README's code blocks, as argv lists."""
    calls = []
    for lang, block in re.findall(r"```([a-z]*)\n(.*?)```", README, re.S):
        if lang == "text":  # the generated synopsis, checked by test_cli_reference_is_current
            continue
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r'"?\$\(([^)]*)\)"?', r" ( \1 ) ", line)
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            tokens = list(lexer)
            for i, token in enumerate(tokens):
                if token != "taxi-cli":
                    continue
                argv = []
                for word in tokens[i + 1 :]:
                    if word and set(word) <= set("|&;()<>"):
                        break
                    argv.append(word)
                first = _first_word(argv)
                if argv and re.fullmatch(
                    r"[a-z][a-z-]*", first
                ):  # not `docker build -t taxi-cli .`
                    calls.append(argv)
    return calls


README_CALLS = _readme_calls()


@pytest.mark.parametrize("argv", README_CALLS, ids=[" ".join(a)[:60] for a in README_CALLS])
def test_readme_examples_use_real_commands_and_options(argv: list[str]) -> None:
    problem = check_call(argv)
    assert problem is None, f"README: `taxi-cli {' '.join(argv)}`: {problem}"


def test_readme_examples_are_found() -> None:
    assert len(README_CALLS) >= 10
    assert ["config", "path"] in README_CALLS
    assert ["--config", "prod.toml", "--profile", "prod", "config", "show"] in README_CALLS


def test_check_call_refuses_what_the_cli_refuses() -> None:
    for argv in (["config", "shw"], ["config", "show", "--profile", "x"], ["--nope", "status"]):
        assert check_call(argv) is not None
        assert CliRunner().invoke(app, argv).exit_code == 2
    assert check_call(["--profile", "prod", "config", "show", "--json"]) is None


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


def test_cli_reference_is_current() -> None:
    from taxi_cli import cli_docs

    assert cli_docs.section() in README, "README's CLI reference is stale: run `make docs`"


def _command_of(argv: list[str]) -> tuple[Any, list[str], str]:
    words = list(argv)
    while words and words[0].startswith("-"):
        opt = words.pop(0)
        if opt in GLOBAL_WITH_VALUE and words:
            words.pop(0)
    command: Any = ROOT
    name = ""
    while hasattr(command, "commands") and words and not words[0].startswith("-"):
        name = words.pop(0)
        command = command.commands[name]
    return command, words, name


@pytest.mark.parametrize("argv", README_CALLS, ids=[" ".join(a)[:60] for a in README_CALLS])
def test_readme_examples_parse(argv: list[str]) -> None:
    """Each example's values parse as the CLI parses them: choices, numbers, months and
    taxi types (what a run would check before doing anything)."""
    parse_example(argv)


def parse_example(argv: list[str]) -> None:
    from taxi_cli.catalog import is_zones, select

    command, words, name = _command_of(argv)
    if "--help" in words or any("$" in w for w in words):
        return  # shell variables stand for values the reader supplies
    words = words[: words.index("--")] if "--" in words else words
    ctx = command.make_context(name, list(words), resilient_parsing=False)
    params = ctx.params
    if name in ("extract", "load-pg", "load-gcs", "load-bq", "backfill"):
        taxis, months = params["taxis"], params["months"]
        if is_zones(taxis):
            assert months is None, argv
        elif months is not None or not params.get("catch_up"):
            assert select(taxis, months), argv


def test_readme_example_parsing_catches_what_the_cli_refuses() -> None:
    from taxi_cli.errors import UsageError

    with pytest.raises(UsageError, match="2020-13"):
        parse_example(["load-pg", "green", "2020-13"])
    with pytest.raises(typer.BadParameter):
        parse_example(["backfill", "green", "2020-01", "--reprocess", "some"])
