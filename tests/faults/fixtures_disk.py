"""A small disk for the fault suite (`with small_disk(path) as disk:`): a real tmpfs
where the tests may mount one (root), otherwise the same failures by other real means
(a file-size limit, directory modes).

    disk.path            the directory to use (as TAXI_DATA_DIR)
    disk.preexec         pass to run_cli: applies the size limit when there is no tmpfs
    disk.resize(n)       the space (or limit) becomes n bytes
    disk.read_only()     writes fail from now on (EROFS on tmpfs, EACCES otherwise)
    disk.full_error      the words the one-line error uses for "full"
"""

from __future__ import annotations

import contextlib
import resource
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.faults.helpers import IS_ROOT


def _mount_tmpfs(path: Path, size: int) -> bool:
    if not IS_ROOT:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0  # e.g. a container without CAP_SYS_ADMIN: the fallback


class Disk:
    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self.tmpfs = _mount_tmpfs(path, size)
        self.full_error = "no space left on the device" if self.tmpfs else "too large"

    def preexec(self) -> None:
        if not self.tmpfs:  # EFBIG instead of a killing SIGXFSZ past the limit
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.size, self.size))

    def resize(self, size: int) -> None:
        self.size = size
        if self.tmpfs:
            subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def read_only(self) -> None:
        if self.tmpfs:
            subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)
            return
        for p in [self.path, *self.path.rglob("*")]:
            if p.is_dir():
                p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))

    def close(self) -> None:
        if self.tmpfs:
            subprocess.run(["umount", "-l", str(self.path)], check=False)
        else:
            for p in [self.path, *self.path.rglob("*")]:
                if p.is_dir():
                    p.chmod(0o755)


@contextlib.contextmanager
def small_disk(path: Path, size: int = 64 << 10) -> Iterator[Disk]:
    """A disk of `size` bytes at `path` (created), unmounted or restored afterwards."""
    path.mkdir()
    disk = Disk(path, size)
    try:
        yield disk
    finally:
        disk.close()
