"""The one retry loop: a policy decides after each failure; the bounded policy stops at N."""

from __future__ import annotations

import pytest

from taxi_cli.config import load_settings
from taxi_cli.errors import DataError, TransientError, is_retryable
from taxi_cli.retry import retry_with, retrying


def test_retrying_waits_between_transient_failures_and_reports_the_attempt() -> None:
    cfg = load_settings({"http_backoff": 0.5, "http_backoff_max": 4.0})
    waits: list[float] = []
    told: list[int] = []
    failures: list[Exception] = [TransientError("a"), TransientError("b")]

    def step() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    result = retrying(
        step,
        cfg=cfg,
        attempts=3,
        retryable=is_retryable,
        on_retry=lambda exc, n, delay: told.append(n),
        sleep=waits.append,
    )
    assert result == ("ok", 3)
    assert told == [1, 2] and len(waits) == 2
    assert 0.25 <= waits[0] <= 0.5 and 0.5 <= waits[1] <= 1.0  # 50-100% of 0.5 * 2**(n-1)


def test_retrying_gives_up_at_once_on_what_is_not_retryable_and_after_n_attempts() -> None:
    cfg = load_settings({"http_backoff": 0.0})
    calls: list[int] = []

    def bad() -> None:
        calls.append(1)
        raise DataError("bad")

    with pytest.raises(DataError):
        retrying(bad, cfg=cfg, attempts=5, retryable=is_retryable, sleep=lambda s: None)
    assert len(calls) == 1
    calls.clear()

    def always() -> None:
        calls.append(1)
        raise TransientError("down")

    with pytest.raises(TransientError):
        retrying(always, cfg=cfg, attempts=4, retryable=is_retryable, sleep=lambda s: None)
    assert len(calls) == 4


def test_a_policy_can_give_up_with_an_error_of_its_own_and_stop_halts() -> None:
    class GiveUp:
        def delay(self, error: Exception, attempt: int) -> float | None:
            if attempt >= 2:
                raise RuntimeError(f"gave up after {attempt}") from error
            return 0.0

    def failing() -> None:
        raise TransientError("x")

    with pytest.raises(RuntimeError, match="gave up after 2"):
        retry_with(failing, GiveUp(), sleep=lambda s: None)
    with pytest.raises(TransientError):  # a halting run makes no further attempt
        retry_with(failing, GiveUp(), stop=lambda: True, sleep=lambda s: None)
