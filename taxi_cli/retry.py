"""One retry policy: exponential backoff with jitter, and one loop that applies it.

`backoff_delay` is `http_backoff * 2**(n-1)` capped at `http_backoff_max`, a random
50-100% of it (or the server's Retry-After, capped the same way). `retry_with` is the one
loop; a `Policy` decides after each failure whether and how long to wait. `retrying` is
the common policy (N attempts of what is retryable): partitions, catch-up probes and
BigQuery jobs use it; downloads bring their own policy (a budget that restarts when the
file gets further than ever, and a shorter one for a host that does not answer).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

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


class Policy(Protocol):
    """Decides, after a failed attempt, whether and when to try again."""

    def delay(self, error: Exception, attempt: int) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to give up (the error is
        raised as it is). A policy may raise an error of its own instead: the one that
        says why it gave up."""
        ...


def retry_with(
    step: Callable[[], T],
    policy: Policy,
    *,
    stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[T, int]:
    """The one retry loop: `step()`'s result and the attempt it took."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return step(), attempt
        except Exception as exc:
            wait = None if stop() else policy.delay(exc, attempt)
            if wait is None:
                raise
            sleep(wait)


class _Bounded:
    """At most `attempts` tries of what `retryable` accepts, with the backoff delay."""

    def __init__(
        self,
        cfg: Settings,
        attempts: int,
        retryable: Callable[[BaseException], bool],
        on_retry: Callable[[BaseException, int, float], None] | None,
    ) -> None:
        self.cfg, self.attempts, self.retryable, self.on_retry = cfg, attempts, retryable, on_retry

    def delay(self, error: Exception, attempt: int) -> float | None:
        if attempt >= self.attempts or not self.retryable(error):
            return None
        wait = backoff_delay(self.cfg, attempt)
        if self.on_retry is not None:
            self.on_retry(error, attempt, wait)
        return wait


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
    policy = _Bounded(cfg, attempts, retryable, on_retry)
    return retry_with(step, policy, stop=stop, sleep=sleep)
