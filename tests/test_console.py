"""One Console owns stderr: the log handler, progress displays and the final error line."""

from __future__ import annotations

import json
import logging
import warnings

import pytest
from rich.logging import RichHandler
from typer.testing import CliRunner

from taxi_cli import console
from taxi_cli.console import Output, setup_logging

runner = CliRunner()


@pytest.fixture(autouse=True)
def _fresh() -> None:
    console.reset()


def test_the_log_handler_and_the_progress_share_one_console() -> None:
    setup_logging()
    (handler,) = logging.getLogger("taxi_cli").handlers
    out = Output()
    assert isinstance(handler, console.LineHandler)  # not a terminal: whole lines
    assert handler.console is out.err is console.stderr_console()
    with out.transfer_progress() as progress:
        assert progress is None  # not a terminal here: no live display at all


def test_the_rich_handler_is_used_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich then treats stderr as a terminal
    setup_logging()
    (handler,) = logging.getLogger("taxi_cli").handlers
    assert isinstance(handler, RichHandler)
    assert handler.console is console.stderr_console()
    assert Output().show_progress
    assert not Output(log_json=True).show_progress  # JSON lines only: no bars between them


def test_plain_lines_are_not_wrapped(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging()
    message = "x" * 300
    logging.getLogger("taxi_cli.test").warning("long %s end", message)
    (line,) = capsys.readouterr().err.splitlines()
    assert line == f"WARNING  long {message} end"


def test_json_lines_and_the_json_error(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(fmt="json")
    logging.getLogger("taxi_cli.test").info("hello", extra={"partition": "green 2020-01"})
    console.error_line("it broke [red]here[/red]", 3)
    first, last = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert (first["level"], first["event"]) == ("info", "hello")
    assert first["partition"] == "green 2020-01"
    assert (last["level"], last["event"], last["exit_code"]) == (
        "error",
        "it broke [red]here[/red]",
        3,
    )


def test_text_error_line_keeps_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging()
    console.error_line("bad value [x]", 2)
    assert capsys.readouterr().err == "taxi-cli: error: bad value [x]\n"


def test_python_warnings_become_json_events(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(fmt="json")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("XDG_RUNTIME_DIR is not set", UserWarning, stacklevel=1)
    finally:
        setup_logging()  # text again: warnings are Python's own business
    (line,) = capsys.readouterr().err.splitlines()
    event = json.loads(line)
    assert event["level"] == "warning"
    assert "UserWarning: XDG_RUNTIME_DIR is not set" in event["event"]
