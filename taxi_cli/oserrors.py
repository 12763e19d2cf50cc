"""Operating-system errors as one line that names the path and what to do.

A full disk, a read-only file system, a permission, a missing directory or a directory
where a file should be: `disk_error` turns the `OSError` into a `TaxiError` whose
message names the path, says what happened in words and what to do. A path the user
configured (the data dir, a manifest) gives exit 2 (`config=...` names the setting);
anything under it exit 1. `describe` is the same text for the CLI's last-resort catch.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from taxi_cli.errors import ConfigError, ExitCode, TaxiError

DATA_DIR_HINT = "--data-dir / TAXI_DATA_DIR"


class DiskError(TaxiError):
    """A file could not be read or written (exit 1; 2 when the path is a setting)."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.RUNTIME) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# errno -> (what happened, what to do); `{setting}` is the setting that chose the path
_WHAT: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the device", "free space there or point {setting} elsewhere"),
    errno.EDQUOT: ("the disk quota is exceeded", "free space there or point {setting} elsewhere"),
    errno.EROFS: ("the file system is read-only", "point {setting} at a writable directory"),
    errno.EACCES: ("permission denied", "fix its owner or mode, or point {setting} elsewhere"),
    errno.EPERM: ("operation not permitted", "fix its owner or mode, or point {setting} elsewhere"),
    errno.ENOENT: ("it does not exist", "create it or point {setting} at an existing path"),
    errno.EISDIR: ("a directory is where a file should be", "remove that directory"),
    errno.ENOTDIR: (
        "a file is where a directory should be",
        "move it or point {setting} elsewhere",
    ),
    errno.EEXIST: ("a file is where a directory should be", "move it or point {setting} elsewhere"),
    errno.EFBIG: ("the file is too large for this file system or limit", "free space or raise it"),
    errno.EIO: ("an input/output error (a failing disk?)", "check the disk"),
}


def describe(
    exc: OSError,
    path: Path | str | None = None,
    *,
    setting: str = DATA_DIR_HINT,
    named: bool = False,
) -> str:
    """`<path>: <what happened>; <what to do>` for an OSError; `named`: the path is the
    value of `setting`, so changing the setting is always one way out."""
    where = path if path is not None else (exc.filename or "a file")
    what, todo = _WHAT.get(exc.errno or 0, (exc.strerror or type(exc).__name__, ""))
    if named and "{setting}" not in todo:
        todo = f"{todo} or set {{setting}} to another path" if todo else "set {setting} elsewhere"
    text = f"{where}: {what}"
    return f"{text}; {todo.format(setting=setting)}" if todo else text


def disk_error(
    exc: OSError,
    path: Path | str | None = None,
    *,
    config: str | None = None,
    note: str = "",
) -> TaxiError:
    """The TaxiError for `exc`; `config` names the setting when `path` is one (exit 2)."""
    message = describe(exc, path, setting=config or DATA_DIR_HINT, named=config is not None) + note
    if config is not None:
        return ConfigError(message)
    return DiskError(message)


_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def os_error_of(exc: BaseException) -> OSError | None:
    """The OSError behind `exc`: itself, or the `(os error N)` that Rust libraries such as
    Polars put in their own exception's text when a write fails; None otherwise."""
    if isinstance(exc, OSError):
        return exc
    found = _RUST_OS_ERROR.search(str(exc))
    if found is None:
        return None
    number = int(found.group(1))
    return OSError(number, os.strerror(number))
