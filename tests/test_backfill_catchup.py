"""Catch-up range selection, and the upstream probe against a real HTTP server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from taxi_cli.backfill import catch_up_months, probe_month
from taxi_cli.catalog import FHV, GREEN, YELLOW, TaxiType
from taxi_cli.config import load_settings
from taxi_cli.download import make_client
from taxi_cli.ledger import LedgerRow
from tests.http_host import local_http


def _row(taxi: str, month: str, status: str = "done") -> LedgerRow:
    return LedgerRow(f"{taxi}_{month}.csv", taxi, month, "a" * 64, 1, status, None, None, None)


def _upstream(last: str) -> tuple[list[tuple[str, str]], Callable[[TaxiType, str], bool]]:
    asked: list[tuple[str, str]] = []

    def probe(taxi: TaxiType, month: str) -> bool:
        asked.append((taxi.name, month))
        return month <= last

    return asked, probe


def test_range_runs_from_the_first_missing_month_to_the_newest_upstream() -> None:
    ledger = [_row("green", m) for m in ("2020-01", "2020-02", "2020-03")]
    asked, probe = _upstream("2020-06")
    months = catch_up_months([GREEN], {"pg": ledger}, None, probe, today="2026-11")
    assert months == {"green": ["2020-04", "2020-05", "2020-06"]}
    assert asked == [("green", m) for m in ("2020-04", "2020-05", "2020-06", "2020-07")]


def test_a_failed_month_is_made_up_and_probing_starts_after_the_last_done() -> None:
    ledger = [
        _row("green", "2020-01"),
        _row("green", "2020-02", "failed"),
        _row("green", "2020-03"),
    ]
    asked, probe = _upstream("2020-03")
    months = catch_up_months([GREEN], {"pg": ledger}, None, probe, today="2026-11")
    assert months == {"green": ["2020-02", "2020-03"]}  # 03 is planned as a skip
    assert asked == [("green", "2020-04")]


def test_no_history_starts_at_the_window_and_never_probes_the_future() -> None:
    asked, probe = _upstream("2099-12")
    months = catch_up_months([FHV], {"pg": []}, None, probe, today="2019-04")
    assert months == {"fhv": ["2019-01", "2019-02", "2019-03", "2019-04"]}
    assert asked[-1] == ("fhv", "2019-04")


def test_gcs_and_bq_both_have_to_be_done() -> None:
    gcs = [_row("yellow", m) for m in ("2020-01", "2020-02")]
    bq = [_row("yellow", "2020-01")]
    _, probe = _upstream("2020-02")
    months = catch_up_months([YELLOW], {"gcs": gcs, "bq": bq}, None, probe, today="2026-11")
    assert months == {"yellow": ["2020-02"]}


def test_explicit_start_and_nothing_new() -> None:
    ledger = [_row("green", m) for m in ("2021-01", "2021-02")]
    _, probe = _upstream("2021-02")
    months = catch_up_months([GREEN], {"pg": ledger}, "2021-01", probe, today="2026-11")
    assert months == {"green": []}


class _Release(BaseHTTPRequestHandler):
    """Like GitHub: an existing asset redirects to storage (which refuses HEAD)."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_HEAD(self) -> None:
        if self.path.endswith("2020-01.csv.gz"):
            self.send_response(302)
            self.send_header("Location", "/storage/signed?X-Amz-Signature=get-only")
        elif self.path.startswith("/storage/"):
            self.send_response(403)
        elif self.path.endswith("2020-02.csv.gz"):
            self.send_response(503)
        else:
            self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def release_host() -> Iterator[str]:
    with local_http(_Release) as url:
        yield f"{url}/releases/download"


def test_probe_reads_redirect_as_present_404_as_absent(release_host: str) -> None:
    cfg = load_settings(
        {"source_url": release_host, "http_retries": 1, "http_backoff": 0.01}, env={}
    )
    with make_client(cfg) as client:
        assert probe_month(cfg, client, GREEN, "2020-01") is True
        assert probe_month(cfg, client, GREEN, "2020-03") is False
        assert probe_month(cfg, client, GREEN, "2020-02") is None  # 5xx after retries
