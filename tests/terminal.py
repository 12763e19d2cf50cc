"""Run a command in a real pseudo-terminal and read back what a person would see.

`run_in_terminal` gives the child a pty of a fixed size as stdin, stdout and stderr (so
rich sees a terminal and draws its live display), reads everything it writes, and feeds
it to `pyte`, a VT100 emulator. The result is the screen text: the lines that scrolled
off the top (history) followed by the lines on the screen at exit, trailing blanks cut.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import struct
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyte


@dataclass(frozen=True)
class Screen:
    returncode: int
    lines: list[str]  # history, then the visible screen, right-stripped, blank tail dropped
    raw: bytes

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _line_text(line: Mapping[int, pyte.screens.Char], columns: int) -> str:
    return "".join(line[x].data for x in range(columns)).rstrip()


def run_in_terminal(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    columns: int = 100,
    rows: int = 30,
    timeout: float = 300.0,
) -> Screen:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    child_env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    child_env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(
        list(argv),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=child_env,
        start_new_session=True,
        close_fds=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout  # a bound on a hung child, not an assertion
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError as exc:  # EIO: the child closed its side of the pty
                if exc.errno != errno.EIO:
                    raise
                break
            if not data:
                break
            chunks.append(data)
        else:
            proc.kill()
            raise AssertionError(f"{argv[0]} did not finish within {timeout}s")
        returncode = proc.wait(timeout=60)
    finally:
        os.close(master)
    raw = b"".join(chunks)
    screen = pyte.HistoryScreen(columns, rows, history=100_000, ratio=0.5)
    stream = pyte.ByteStream(screen)
    stream.feed(raw)
    lines = [_line_text(line, columns) for line in screen.history.top]
    lines += [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return Screen(returncode, lines, raw)
