"""Output channels: stdout carries results, stderr carries logs and progress.

`Output` is built once per command by the CLI and handed to library functions, which
never print directly. Progress bars appear only on a terminal and never with `quiet`.
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


def setup_logging(*, quiet: bool = False, verbose: bool = False, fmt: str = "text") -> None:
    """Send the `taxi_cli` logger to stderr: rich text, or JSON lines."""
    level = logging.ERROR if quiet else (logging.DEBUG if verbose else logging.INFO)
    root = logging.getLogger("taxi_cli")
    root.handlers.clear()
    root.propagate = False
    root.setLevel(level)
    handler: logging.Handler
    if fmt == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLogFormatter())
    else:
        handler = RichHandler(
            console=Console(stderr=True),
            show_path=False,
            show_time=False,
            rich_tracebacks=False,
            markup=False,
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(MaskSecrets())  # no module can log a password by mistake
    root.addHandler(handler)


@dataclass
class Output:
    """Where a command's results and progress go."""

    quiet: bool = False
    json: bool = False
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    err: Console = field(default_factory=lambda: Console(stderr=True))
    out: Console = field(default_factory=lambda: Console(soft_wrap=True))

    @property
    def show_progress(self) -> bool:
        return not self.quiet and self.err.is_terminal

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
