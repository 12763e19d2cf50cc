"""One backfill per target at a time: an advisory `flock` on a file under the state dir.

The kernel drops a `flock` when its process dies (SIGKILL, crash, power loss), so a lock
left by a dead run is never stale: the next run simply takes it. The file holds JSON
{pid, host, started, argv} of the holder so that a refused run can name it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from taxi_cli.config import Settings, hostname
from taxi_cli.errors import ConfigError, LockedError


def lock_path(cfg: Settings, name: str) -> Path:
    """`{state_dir}/locks/{name}.lock`, with `name` made safe for a file name."""
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_") or "lock"
    return cfg.state_path / "locks" / f"{safe}.lock"


@dataclass(frozen=True)
class Holder:
    pid: int | None
    host: str
    started: str
    argv: list[str]

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started}"


def read_holder(path: Path) -> Holder | None:
    """Who wrote the lock file last (the holder, if the lock is held)."""
    try:
        data: dict[str, Any] = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return None
    if not data:
        return None
    return Holder(
        pid=data.get("pid"),
        host=str(data.get("host", "?")),
        started=str(data.get("started", "?")),
        argv=list(data.get("argv", [])),
    )


class RunLock:
    """`with RunLock(path, what="backfill of pg ..."):` — held until the block ends."""

    def __init__(self, path: Path, *, what: str, wait: float = 0.0) -> None:
        self.path = path
        self.what = what
        self.wait = wait
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # "a+" neither truncates the holder's record nor fails if the file exists.
            handle = open(self.path, "a+")  # noqa: SIM115 - held until release()
        except OSError as exc:
            raise ConfigError(f"cannot create the lock {self.path}: {exc}") from exc
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    holder = read_holder(self.path)
                    who = holder.describe() if holder else "another process"
                    raise LockedError(
                        f"another {self.what} is running ({who}); lock {self.path}; "
                        "wait for it to finish, or stop it"
                    ) from None
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        record = {
            "pid": os.getpid(),
            "host": hostname(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "argv": sys.argv,
        }
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            # Unlock before close: closing alone also unlocks, but only the last fd does.
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
