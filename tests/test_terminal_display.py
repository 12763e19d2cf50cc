"""What a person sees on stderr during `backfill`: one console owns it.

The terminal test runs the real console script in a pseudo-terminal (tests/terminal.py)
on a real backfill (the local mirror, the embedded Postgres, one month that fails) and
reads the emulated screen: every log line stands on its own line, no frame of the
(transient) progress display is left behind, and the failure and the final error line
are there. The other tests cover stderr that is not a terminal: lines are not wrapped,
and `--log-format json` makes every line JSON, the final error included.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from taxi_cli.catalog import month_range
from tests.fixtures_mirror import Mirror, rel_path
from tests.terminal import run_in_terminal

pytestmark = pytest.mark.integration

TAXI_CLI = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "taxi-cli"
MONTHS = month_range("2020-01", "2020-06")
BAD = "2020-03"
# What the live display draws: the overall bar and one line per partition in flight.
PROGRESS_TEXT = re.compile(r"backfill pg|green 2020-\d\d: (downloading|loading)|\d+/\d+\s*$")
LOG_LINE = re.compile(r"^(INFO|WARNING|ERROR)\s{2,}\S")


def _serve(mirror: Mirror) -> None:
    for month in MONTHS:
        mirror.add_month("green", month, rows=30_000)
    mirror.serve_html(rel_path("green", BAD))  # 200 with an HTML page: fails to verify


def _argv(pg_url: str, *extra: str) -> list[str]:
    months = f"{MONTHS[0]}..{MONTHS[-1]}"
    return [str(TAXI_CLI), "backfill", "green", months, "--pg-url", pg_url, "-j", "2", *extra]


def test_progress_and_log_lines_share_the_terminal(mirror: Mirror, pg_url: str) -> None:
    _serve(mirror)
    screen = run_in_terminal(_argv(pg_url), os.environ, columns=110, rows=24)
    text = screen.text
    assert screen.returncode == 4, text
    assert b"\x1b[?25l" in screen.raw, "no live display was drawn: the test proves nothing"

    stale = [line for line in screen.lines if PROGRESS_TEXT.search(line)]
    assert stale == [], "progress frames left on the screen:\n" + text
    # Each outcome is a log line of its own, starting with its level (nothing glued on).
    for month in MONTHS:
        if month == BAD:
            continue
        done = [line for line in screen.lines if f"green {month} -> pg: done" in line]
        assert len(done) == 1 and LOG_LINE.match(done[0]), text
    failed = [line for line in screen.lines if f"green {BAD} -> pg failed" in line]
    assert len(failed) == 1 and failed[0].startswith("ERROR "), text
    summary = screen.lines.index("backfill summary")
    errors = [i for i, line in enumerate(screen.lines) if line.startswith("taxi-cli: error: ")]
    assert len(errors) == 1 and errors[0] > summary, text
    assert screen.lines[errors[0]].startswith("taxi-cli: error: 1 of 6 partitions failed")


def test_log_lines_are_not_wrapped_when_stderr_is_not_a_terminal(
    mirror: Mirror, pg_url: str
) -> None:
    _serve(mirror)
    proc = subprocess.run(_argv(pg_url), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 4, proc.stderr
    lines = proc.stderr.splitlines()
    failed = [line for line in lines if f"green {BAD} -> pg failed" in line]
    assert len(failed) == 1, proc.stderr
    assert len(failed[0]) > 80  # the whole message on one line, wider than a default console
    assert failed[0].startswith("ERROR ")
    continued = [line for line in lines if line.startswith(" " * 9)]  # a wrapped message
    assert continued == [], proc.stderr
    assert lines[-1].startswith("taxi-cli: error: 1 of 6 partitions failed")


def test_json_log_format_makes_every_stderr_line_json(mirror: Mirror, pg_url: str) -> None:
    _serve(mirror)
    proc = subprocess.run(
        _argv(pg_url, "--log-format", "json"), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 4, proc.stderr
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    assert any(e.get("state") == "failed" for e in events)
    last = events[-1]
    assert last["level"] == "error"
    assert last["event"].startswith("1 of 6 partitions failed")
    assert last["exit_code"] == 4


def test_json_log_format_on_a_terminal_draws_no_progress(mirror: Mirror, pg_url: str) -> None:
    _serve(mirror)
    screen = run_in_terminal(_argv(pg_url, "--log-format", "json"), os.environ)
    assert screen.returncode == 4, screen.text
    assert b"\x1b[?25l" not in screen.raw  # no live display drawn between the JSON lines
    lines = screen.raw.decode().split("\r\n")
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(events) >= len(MONTHS)
    assert events[-1]["level"] == "error" and events[-1]["exit_code"] == 4
