"""The error vocabulary of taxi-cli.

Library code raises only `TaxiError` subclasses; the CLI's single error boundary
(`taxi_cli.cli.reports_errors`) prints `taxi-cli: error: <message>` on stderr and exits
with the error's `exit_code`. Messages are one line: what failed, where, what to do.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes: a contract that scripts and schedulers rely on."""

    OK = 0
    RUNTIME = 1  # a data or runtime failure
    USAGE = 2  # bad arguments or configuration
    CONNECTION = 3  # cannot reach or log in to a server
    PARTIAL = 4  # a backfill finished with failed partitions
    INTERRUPTED = 130


class TaxiError(Exception):
    """Base class: a failure the user can act on, with its exit code."""

    exit_code: ExitCode = ExitCode.RUNTIME

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(TaxiError):
    """A bad argument or option value (exit 2)."""

    exit_code = ExitCode.USAGE


class ConfigError(TaxiError):
    """A bad or missing setting (exit 2)."""

    exit_code = ExitCode.USAGE


class ConnectError(TaxiError):
    """A server cannot be reached, or refused the login (exit 3)."""

    exit_code = ExitCode.CONNECTION


class DataError(TaxiError):
    """Input data is bad: a corrupt download, a row that does not parse (exit 1)."""

    exit_code = ExitCode.RUNTIME


class DownloadError(TaxiError):
    """A download failed for good (404, retries exhausted) (exit 1)."""

    exit_code = ExitCode.RUNTIME


class TransientError(TaxiError):
    """A failure that may pass if retried: network, 5xx, a lost connection."""

    exit_code = ExitCode.RUNTIME


class LockedError(TaxiError):
    """Another run holds the lock for this target (exit 1)."""

    exit_code = ExitCode.RUNTIME


class PartialFailure(TaxiError):
    """Some partitions of a multi-partition run failed (exit 4)."""

    exit_code = ExitCode.PARTIAL


def is_retryable(exc: BaseException) -> bool:
    """Worth another attempt of the same step: network, 5xx, a lost connection."""
    return isinstance(exc, TransientError | ConnectError)
