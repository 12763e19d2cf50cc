"""Asking the release host which version of an asset it serves now (taxi_cli.upstream):
HEAD through the redirect, a one-byte GET where storage refuses HEAD, and an unreachable
host that is asked once, not once per month."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from taxi_cli import upstream
from taxi_cli.catalog import GREEN, Partition
from taxi_cli.config import load_settings
from taxi_cli.download import make_client
from taxi_cli.model import Upstream
from tests.http_host import local_http

SIZE = 670_361
ETAG = '"abc123"'
MODIFIED = "Wed, 01 Apr 2020 00:00:00 GMT"


class _Host(BaseHTTPRequestHandler):
    """Like GitHub: the asset redirects to signed storage, which refuses HEAD."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str, str | None]] = []

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _answer(self) -> None:
        _Host.seen.append((self.command, self.path, self.headers.get("Range")))
        if self.path.startswith("/releases/"):
            self.send_response(302)
            self.send_header("Location", "/storage/signed?X-Amz-Signature=get-only")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.command == "HEAD":
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206)
        self.send_header("Content-Range", f"bytes 0-0/{SIZE}")
        self.send_header("Content-Length", "1")
        self.send_header("ETag", ETAG)
        self.send_header("Last-Modified", MODIFIED)
        self.end_headers()
        self.wfile.write(b"\x1f")

    do_HEAD = _answer
    do_GET = _answer


@pytest.fixture
def host() -> Iterator[str]:
    _Host.seen = []
    with local_http(_Host) as url:
        yield f"{url}/releases/download"


def test_storage_that_refuses_head_is_asked_for_one_byte(host: str) -> None:
    cfg = load_settings({"source_url": host}, env={})
    found = upstream.versions(cfg, [Partition(GREEN, "2020-04")])
    assert found == {("green", "2020-04"): Upstream(SIZE, ETAG, MODIFIED)}
    assert [(m, r) for m, p, r in _Host.seen if p.startswith("/storage/")] == [
        ("HEAD", None),
        ("GET", "bytes=0-0"),
    ]


def test_a_change_is_named_by_its_first_differing_field() -> None:
    before = Upstream(670_357, '"a"', MODIFIED)
    assert Upstream(670_361, '"b"', MODIFIED).change_from(before) == "size 670357 -> 670361"
    assert Upstream(670_357, '"b"', None).change_from(before) == 'ETag "a" -> "b"'
    assert Upstream(670_357, None, None).change_from(before) is None  # unknown is no change
    assert Upstream(None, None, None).change_from(before) is None


def test_an_unreachable_host_is_asked_once(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = load_settings({"source_url": f"http://127.0.0.1:{port}/releases"}, env={})
    months = [Partition(GREEN, f"2020-{m:02d}") for m in range(1, 13)]
    with make_client(cfg) as client:
        found = upstream.versions(cfg, months, client)
    assert found == {("green", p.month): None for p in months}
    reached = [r for r in caplog.records if "cannot reach" in r.getMessage()]
    assert len(reached) == 1
