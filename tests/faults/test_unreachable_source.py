"""A source that cannot be reached exits 3 ("cannot connect") after a short bounded
retry, with one line naming the host (credentials masked) and what to do.

Refused: a real closed port on 127.0.0.1. No DNS, no route, connect timeout: httpx's own
MockTransport raises what httpx raises for them, so no test leaves 127.0.0.1.
"""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from taxi_cli import download
from taxi_cli.catalog import GREEN
from taxi_cli.config import load_settings
from taxi_cli.errors import ConnectError, ExitCode, TransientError
from taxi_cli.extract import ensure_file
from tests.faults.helpers import cli, error_line, files_in, final_path

pytestmark = pytest.mark.integration


def _closed_port() -> int:
    with socket.socket() as sock:  # free a moment ago: connection refused
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_refused_connection_exits_3_naming_the_masked_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = _closed_port()
    monkeypatch.setenv("TAXI_SOURCE_URL", f"http://ana:pw123@127.0.0.1:{port}/releases")
    monkeypatch.setenv("TAXI_HTTP_RETRIES", "50")  # not spent on a host that never answered
    result = cli("extract", "green", "2020-04")
    assert result.exit_code == ExitCode.CONNECTION
    line = error_line(result)
    assert f"cannot connect to 127.0.0.1:{port} (ConnectError" in line
    assert "--source-url / TAXI_SOURCE_URL" in line
    assert "pw123" not in result.stderr
    assert result.stderr.count("retrying") == download.CONNECT_RETRIES
    assert files_in(final_path("green", "2020-04").parent) == []


@pytest.mark.parametrize(
    ("error", "calls"),
    [
        (httpx.ConnectError("[Errno -2] Name or service not known"), 1 + download.CONNECT_RETRIES),
        (httpx.ConnectError("[Errno 101] Network is unreachable"), 1 + download.CONNECT_RETRIES),
        (httpx.ConnectTimeout("timed out"), 1),  # it already waited CONNECT_TIMEOUT
    ],
)
def test_no_dns_no_route_and_connect_timeout_are_connect_errors(
    tmp_path: Path, error: httpx.TransportError, calls: int
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise error

    cfg = load_settings({"source_url": "https://mirror.example/releases", "http_retries": "50"})
    cfg = cfg.with_values(http_backoff=0.0)
    with (
        httpx.Client(transport=httpx.MockTransport(handler)) as client,
        pytest.raises(ConnectError) as caught,
    ):
        ensure_file(cfg, GREEN, "2020-04", client=client)
    assert caught.value.exit_code == ExitCode.CONNECTION
    assert str(caught.value).startswith("cannot connect to mirror.example (")
    assert len(seen) == calls


def test_a_host_that_answered_then_vanished_uses_the_normal_budget(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(503)  # it answered: a restart or a blip follows
        raise httpx.ConnectError("[Errno 111] Connection refused")

    cfg = load_settings({"source_url": "https://mirror.example/releases", "http_retries": "4"})
    cfg = cfg.with_values(http_backoff=0.0)
    with (
        httpx.Client(transport=httpx.MockTransport(handler)) as client,
        pytest.raises(TransientError) as caught,
    ):
        ensure_file(cfg, GREEN, "2020-04", client=client)
    assert "failed after 5 attempts" in str(caught.value)
    assert len(seen) == 5


def test_catch_up_against_an_unreachable_source_exits_3_not_up_to_date(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = _closed_port()
    monkeypatch.setenv("TAXI_SOURCE_URL", f"http://ana:pw123@127.0.0.1:{port}/releases")
    monkeypatch.setenv("TAXI_HTTP_BACKOFF", "0.01")
    for retries in ("0", "50"):
        monkeypatch.setenv("TAXI_HTTP_RETRIES", retries)
        result = cli("backfill", "green", "--catch-up", "--target", "gcs", "--dry-run")
        assert result.exit_code == ExitCode.CONNECTION, result.stderr
        line = error_line(result)
        assert f"cannot connect to 127.0.0.1:{port}" in line and "pw123" not in result.stderr


def test_a_multi_month_extract_stops_at_the_first_unreachable_month(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = _closed_port()
    monkeypatch.setenv("TAXI_SOURCE_URL", f"http://127.0.0.1:{port}/releases")
    monkeypatch.setenv("TAXI_HTTP_BACKOFF", "0.01")
    result = cli("extract", "green", "2020-01..2020-06")
    assert result.exit_code == ExitCode.CONNECTION
    assert f"cannot connect to 127.0.0.1:{port}" in error_line(result)
    # one month's short retry, not six months of them
    assert result.stderr.count("retrying") == download.CONNECT_RETRIES
