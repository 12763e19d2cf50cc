"""Hostile or broken HTTP servers: every download stays bounded in time and size.

Each test starts the local mirror (tests/fixtures_mirror.py) and makes one path
misbehave, then asserts the exit code, the one error line, how many requests were made
and that nothing is left that a later run would trust or resume wrongly.
"""

from __future__ import annotations

import re
from http.server import BaseHTTPRequestHandler

import pytest

from taxi_cli import download
from tests.faults.helpers import cli, error_line, files_in, final_path, part_path
from tests.fixtures_mirror import PREFIX, Mirror, rel_path

pytestmark = pytest.mark.integration

MONTH = ("green", "2020-04")
PATH = rel_path(*MONTH)


def _headers(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str]) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()


def _endless(handler: BaseHTTPRequestHandler, chunk: bytes) -> int:
    """Write `chunk` until the client hangs up; return the bytes sent."""
    sent = 0
    try:
        while sent < 1 << 30:
            handler.wfile.write(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


def test_same_drop_without_range_support_is_not_retried_forever(
    mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAXI_HTTP_RETRIES", "3")
    mirror.add_month(*MONTH, rows=3000)
    mirror.ignore_range(PATH)
    mirror.drop_after(PATH, 5000, times=1000)  # every response stops at byte 5000
    result = cli("extract", *MONTH)
    assert result.exit_code == 1
    line = error_line(result)
    assert "failed after 4 attempts" in line and "run again (it resumes)" in line
    # the first attempt got further than ever (5000 > 0); the next three did not
    assert [g.sent for g in mirror.gets(PATH)] == [5000] * 4
    assert not final_path(*MONTH).exists()


def test_growing_drops_without_range_support_still_finish(
    mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAXI_HTTP_RETRIES", "2")
    src = mirror.add_month(*MONTH, rows=3000)
    mirror.ignore_range(PATH)
    for n in range(1, 8):  # each restart gets further than the last: that is progress
        mirror.drop_after(PATH, n * 10_000)
    result = cli("extract", *MONTH, "--json")
    assert result.exit_code == 0, result.stderr
    assert final_path(*MONTH).read_bytes() == src.read_bytes()


def test_body_longer_than_content_length_is_cut_at_the_length(mirror: Mirror) -> None:
    src = mirror.add_month(*MONTH, rows=2000)

    def respond(h: BaseHTTPRequestHandler, data: bytes, offset: int) -> int:
        _headers(h, 200, {"Content-Length": str(len(data))})
        h.wfile.write(data + b"garbage after the announced length" * 1000)
        return len(data) + 34_000

    mirror.hijack(PATH, respond)
    result = cli("extract", *MONTH, "--json")
    assert result.exit_code == 0, result.stderr
    assert final_path(*MONTH).read_bytes() == src.read_bytes()


def test_endless_body_is_cut_at_the_manifest_size_and_rejected(mirror: Mirror) -> None:
    src = mirror.add_month(*MONTH, rows=2000)
    size = src.stat().st_size

    def respond(h: BaseHTTPRequestHandler, data: bytes, offset: int) -> int:
        _headers(h, 200, {"Content-Type": "application/gzip"})  # no length: until close
        h.wfile.write(data)
        return len(data) + _endless(h, b"\0" * 65536)

    mirror.hijack(PATH, respond)
    result = cli("extract", *MONTH)
    assert result.exit_code == 1
    line = error_line(result)
    assert f"sent more than the {size:,} bytes expected" in line and "discarded" in line
    assert len(mirror.gets(PATH)) == 1  # not retried: the server is wrong, not flaky
    assert files_in(final_path(*MONTH).parent) == []


def test_endless_body_without_manifest_or_length_stops_at_the_ceiling(
    mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAXI_MANIFEST", "none")
    monkeypatch.setattr(download, "MAX_UNKNOWN_SIZE", 1 << 20)  # 1 GiB in production
    mirror.add_month(*MONTH, rows=200)

    def respond(h: BaseHTTPRequestHandler, data: bytes, offset: int) -> int:
        _headers(h, 200, {})
        return _endless(h, b"\x1f\x8b" + b"\0" * 65534)

    mirror.hijack(PATH, respond)
    result = cli("extract", *MONTH)
    assert result.exit_code == 1
    assert "sent more than the 1,048,576 bytes expected" in error_line(result)
    assert files_in(final_path(*MONTH).parent) == []


def test_content_length_beyond_the_manifest_is_rejected_before_writing(mirror: Mirror) -> None:
    src = mirror.add_month(*MONTH, rows=2000)
    size = src.stat().st_size

    def respond(h: BaseHTTPRequestHandler, data: bytes, offset: int) -> int:
        _headers(h, 200, {"Content-Length": str(10 * size)})
        return 0  # the headers alone must be enough to refuse

    mirror.hijack(PATH, respond)
    result = cli("extract", *MONTH)
    assert result.exit_code == 1
    line = error_line(result)
    assert f"announces {10 * size:,} bytes, more than the {size:,}" in line
    assert files_in(final_path(*MONTH).parent) == []


def _redirect(to: str):  # type: ignore[no-untyped-def]
    def respond(h: BaseHTTPRequestHandler, data: bytes, offset: int) -> int:
        _headers(h, 302, {"Location": to, "Content-Length": "0"})
        return 0

    return respond


def test_redirect_loop_is_one_line_exit_1(mirror: Mirror) -> None:
    mirror.add_month(*MONTH, rows=200)
    other = "/green/elsewhere.csv.gz"
    mirror.hijack(PATH, _redirect(PREFIX + other))
    mirror.hijack(other, _redirect(PREFIX + PATH))
    result = cli("extract", *MONTH)
    assert result.exit_code == 1
    line = error_line(result)
    assert "redirect loop at" in line and PATH in line
    assert len(mirror.gets(PATH)) == 1 and len(mirror.gets(other)) == 1


def test_too_many_redirects_is_one_line_exit_1(mirror: Mirror) -> None:
    mirror.add_month(*MONTH, rows=200)

    def respond(h: BaseHTTPRequestHandler, data: bytes, offset: int) -> int:
        n = int(m.group(1)) if (m := re.search(r"n=(\d+)", h.path)) else 0
        _headers(h, 307, {"Location": f"{PREFIX}{PATH}?n={n + 1}", "Content-Length": "0"})
        return 0

    mirror.hijack(PATH, respond)
    result = cli("extract", *MONTH)
    assert result.exit_code == 1
    assert f"more than {download.MAX_REDIRECTS} redirects" in error_line(result)
    assert len(mirror.gets(PATH)) == download.MAX_REDIRECTS + 1


@pytest.mark.parametrize("content_range", ["bytes five-ten/100", "items 0-9/10", ""])
def test_malformed_content_range_is_one_line_exit_1(mirror: Mirror, content_range: str) -> None:
    src = mirror.add_month(*MONTH, rows=2000)
    part = part_path(*MONTH)
    part.parent.mkdir(parents=True)
    part.write_bytes(src.read_bytes()[:3000])  # an interrupted run: the next one resumes

    def respond(h: BaseHTTPRequestHandler, data: bytes, offset: int) -> int:
        body = data[offset:]
        _headers(h, 206, {"Content-Length": str(len(body)), "Content-Range": content_range})
        h.wfile.write(body)
        return len(body)

    mirror.hijack(PATH, respond)
    result = cli("extract", *MONTH)
    assert result.exit_code == 1
    assert "malformed Content-Range" in error_line(result)
    assert len(mirror.gets(PATH)) == 1
    assert not final_path(*MONTH).exists()


def test_206_for_another_offset_is_one_line_exit_1(mirror: Mirror) -> None:
    src = mirror.add_month(*MONTH, rows=2000)
    part = part_path(*MONTH)
    part.parent.mkdir(parents=True)
    part.write_bytes(src.read_bytes()[:3000])

    def respond(h: BaseHTTPRequestHandler, data: bytes, offset: int) -> int:
        _headers(
            h,
            206,
            {
                "Content-Length": str(len(data)),
                "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}",
            },
        )
        h.wfile.write(data)
        return len(data)

    mirror.hijack(PATH, respond)
    result = cli("extract", *MONTH)
    assert result.exit_code == 1
    line = error_line(result)
    assert "answered a request for byte 3,000 on with bytes from 0" in line
    assert len(mirror.gets(PATH)) == 1
    # the splice was refused and the partial file dropped: the next run starts clean
    assert files_in(final_path(*MONTH).parent) == []


def test_giving_up_keeps_the_part_only_when_it_can_be_resumed(
    mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAXI_HTTP_RETRIES", "1")
    mirror.add_month(*MONTH, rows=3000)

    def drop_without_validator(h: BaseHTTPRequestHandler, data: bytes, offset: int) -> int:
        _headers(h, 200, {"Content-Length": str(len(data))})  # no ETag, no Last-Modified
        h.wfile.write(data[:4000])
        return 4000

    mirror.hijack(PATH, drop_without_validator)
    result = cli("extract", *MONTH)
    assert result.exit_code == 1
    line = error_line(result)
    assert line.endswith("then run again") and "failed after 2 attempts" in line
    assert files_in(final_path(*MONTH).parent) == []  # nothing to splice onto later


def test_giving_up_with_a_validator_keeps_the_part_for_the_next_run(
    mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAXI_HTTP_RETRIES", "0")
    src = mirror.add_month(*MONTH, rows=3000)
    mirror.drop_after(PATH, 4000)  # the mirror sends an ETag: the part can be resumed
    result = cli("extract", *MONTH)
    assert result.exit_code == 1
    assert error_line(result).endswith("then run again (it resumes)")
    assert part_path(*MONTH).stat().st_size == 4000
    again = cli("extract", *MONTH)
    assert again.exit_code == 0, again.stderr
    assert mirror.gets(PATH)[-1].range == "bytes=4000-"
    assert final_path(*MONTH).read_bytes() == src.read_bytes()
