"""Run one step over every (taxi, month) of the command-line specs.

A partition that fails is recorded and the others still run; the command then exits 4
(or with the partition's own error when it was the only one). Configuration and
connection errors stop the run at once: every other partition would fail the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from taxi_cli.catalog import TaxiType
from taxi_cli.errors import ExitCode, PartialFailure, TaxiError
from taxi_cli.extract import plan

T = TypeVar("T")


class PartitionsFailed(PartialFailure):
    """Some partitions failed (exit 4); `done` holds the results of the others."""

    def __init__(self, message: str, done: list[Any]) -> None:
        super().__init__(message)
        self.done = done


log = logging.getLogger("taxi_cli.gcp")

FATAL = (ExitCode.USAGE, ExitCode.CONNECTION)


def each_partition(
    taxis: str,
    months: str | None,
    step: Callable[[TaxiType, str], T],
    failed: Callable[[TaxiType, str, TaxiError], None],
) -> list[T]:
    # extract's planner: the same specs, and `all` skips months outside each release window
    todo = plan(taxis, months)
    done: list[T] = []
    errors: list[tuple[TaxiType, str, TaxiError]] = []
    for taxi, month in todo:
        try:
            done.append(step(taxi, month))
        except TaxiError as exc:
            failed(taxi, month, exc)
            if exc.exit_code in FATAL or len(todo) == 1:
                raise
            log.error("%s %s failed: %s", taxi.name, month, exc)
            errors.append((taxi, month, exc))
    if errors:
        names = ", ".join(f"{t.name} {m}" for t, m, _ in errors)
        raise PartitionsFailed(
            f"{len(errors)} of {len(todo)} partitions failed ({names}); first error: "
            f"{errors[0][2]}",
            done,
        )
    return done
