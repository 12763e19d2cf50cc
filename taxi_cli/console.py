"""Output channels: stdout carries results, stderr carries logs and progress.

`Output` is built once per command by the CLI and handed to library functions, which
never print directly. Progress bars appear only on a terminal, never with `quiet` and
never with JSON log lines.

One rich `Console` owns stderr (`stderr_console()`): the log handler, every progress
display and the CLI's final error line all write through it, so a log line printed while
a live display is drawn lands above the display on a line of its own, and no stale frame
stays behind. When stderr is not a terminal (cron, CI, a pipe) log lines are written
whole, never wrapped at the console's width; with `--log-format json` every stderr line
is one JSON object, the final error included (`error_line`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from taxi_cli.redact import MaskSecrets

log = logging.getLogger("taxi_cli")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: ts, level, event, and any `extra=` fields."""

    _RESERVED = set(vars(logging.makeLogRecord({})))

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._RESERVED and not key.startswith("_"):
                payload[key] = value
        return json.dumps(payload, default=str)


class _State:
    console: Console | None = None
    fmt: str = "text"


def stderr_console() -> Console:
    """The one Console that writes to stderr (built on first use in each command)."""
    if _State.console is None:
        _State.console = Console(stderr=True)
    return _State.console


def reset() -> None:
    """Forget the console and log format of a previous command (one process, many runs)."""
    _State.console = None
    _State.fmt = "text"
    logging.captureWarnings(False)


class LineHandler(logging.Handler):
    """Writes each formatted record through the console as one line, never wrapped."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.out(self.format(record), highlight=False)
        except Exception:  # logging must never take the run down
            self.handleError(record)


class LiveSafeRichHandler(RichHandler):
    """A RichHandler whose every record is written while holding the live display's lock.

    Rich works out a print's cursor moves under the Live's lock but writes them after
    releasing it, so a log line from a worker thread could land between a refresh's
    reckoning and its write, or inside the transient display's final erase: the erase
    then removes the log line and leaves a stale bar frame. Live holds its lock across
    each refresh and its stop; holding it across the whole log print makes them take turns.
    """

    def emit(self, record: logging.LogRecord) -> None:
        lives = getattr(self.console, "_live_stack", None) or []
        lock = getattr(lives[0], "_lock", None) if lives else None
        if lock is None:
            super().emit(record)
            return
        with lock:
            super().emit(record)


def setup_logging(*, quiet: bool = False, verbose: bool = False, fmt: str = "text") -> None:
    """Send the `taxi_cli` logger to the stderr console: rich text, plain lines, or JSON."""
    level = logging.ERROR if quiet else (logging.DEBUG if verbose else logging.INFO)
    root = logging.getLogger("taxi_cli")
    root.handlers.clear()
    root.propagate = False
    root.setLevel(level)
    _State.fmt = fmt
    console = stderr_console()
    handler: logging.Handler
    if fmt == "json":
        handler = LineHandler(console)
        handler.setFormatter(JsonLogFormatter())
    elif not console.is_terminal:
        # The RichHandler's level column, without its wrapping at the console width.
        handler = LineHandler(console)
        handler.setFormatter(logging.Formatter("%(levelname)-8s %(message)s"))
    else:
        handler = LiveSafeRichHandler(
            console=console,
            show_path=False,
            show_time=False,
            rich_tracebacks=False,
            markup=False,
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(MaskSecrets())  # no module can log a password by mistake
    root.addHandler(handler)
    # Python warnings (a library's, e.g. platformdirs' XDG_RUNTIME_DIR one under cron)
    # print plain text to stderr: with JSON lines they become JSON events too.
    warned = logging.getLogger("py.warnings")
    warned.handlers.clear()
    logging.captureWarnings(fmt == "json")
    if fmt == "json":
        warned.propagate = False
        warned.setLevel(logging.ERROR if quiet else logging.WARNING)
        warned.addHandler(handler)


def error_line(message: str, exit_code: int, *, label: str = "error") -> None:
    """The CLI's last word on stderr: `taxi-cli: error: ...`, or a JSON error event."""
    console = stderr_console()
    if _State.fmt == "json":
        fields = {"levelname": "ERROR", "msg": message, "exit_code": exit_code}
        console.out(JsonLogFormatter().format(logging.makeLogRecord(fields)), highlight=False)
    else:
        text = f"taxi-cli: {label}: {message}" if label else f"taxi-cli: {message}"
        console.out(text, highlight=False)


@dataclass
class Output:
    """Where a command's results and progress go."""

    quiet: bool = False
    json: bool = False
    log_json: bool = False  # stderr carries JSON lines only: no live display between them
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    err: Console = field(default_factory=stderr_console)
    out: Console = field(default_factory=lambda: Console(soft_wrap=True))

    @property
    def show_progress(self) -> bool:
        return not self.quiet and not self.log_json and self.err.is_terminal

    def emit_json(self, payload: Any) -> None:
        self.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
        self.stdout.flush()

    @contextmanager
    def transfer_progress(self) -> Iterator[Progress | None]:
        """A byte-progress display (speed, ETA) on stderr, or None when hidden."""
        if not self.show_progress:
            yield None
            return
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.err,
            transient=True,
        )
        with progress:
            yield progress


def add_task(progress: Progress | None, description: str, total: float | None) -> TaskID | None:
    """Add a bar when progress is shown; returns its id or None."""
    if progress is None:
        return None
    return progress.add_task(description, total=total)
