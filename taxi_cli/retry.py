"""One retry policy: exponential backoff with jitter, and one loop that applies it.

`backoff_delay` is `http_backoff * 2**(n-1)` capped at `http_backoff_max`, a random
50-100% of it (or the server's Retry-After, capped the same way). `retrying` runs a step
until it succeeds, raises something not retryable, or runs out of attempts; downloads
(whose budget restarts when bytes arrive), partitions, probes and BigQuery jobs all wait
by the same rule.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from taxi_cli.config import Settings

T = TypeVar("T")


def backoff_delay(cfg: Settings, failures: int, retry_after: str | None = None) -> float:
    """Seconds to wait before retry number `failures` (1-based)."""
    if retry_after:
        try:
            return min(float(retry_after), cfg.http_backoff_max)
        except ValueError:
            pass
    delay: float = min(cfg.http_backoff * 2.0 ** (failures - 1), cfg.http_backoff_max)
    return delay * random.uniform(0.5, 1.0)


def retrying(
    step: Callable[[], T],
    *,
    cfg: Settings,
    attempts: int,
    retryable: Callable[[BaseException], bool],
    on_retry: Callable[[BaseException, int, float], None] | None = None,
    stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[T, int]:
    """`step()`'s result and the attempt it took; the last error once attempts run out.

    `on_retry(error, attempt, delay)` is told before each wait (for the log); `stop()`
    true means no further attempt (the run is halting).
    """
    for attempt in range(1, attempts + 1):
        try:
            return step(), attempt
        except Exception as exc:
            if attempt >= attempts or not retryable(exc) or stop():
                raise
            delay = backoff_delay(cfg, attempt)
            if on_retry is not None:
                on_retry(exc, attempt, delay)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
