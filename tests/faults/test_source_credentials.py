"""Credentials in the source URL (`http://user:pw@mirror/...`): sent to their own origin
only, and never printed: not in logs, errors, `--json`, `config show` or `schedule`.

Two local servers on different ports: the first redirects to the second, which records
what Authorization header (if any) reached it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.faults.helpers import cli, error_line
from tests.fixtures_mirror import PREFIX, Mirror, rel_path

pytestmark = pytest.mark.integration

MONTH = ("green", "2020-04")
PATH = rel_path(*MONTH)
USER, PASSWORD = "ana", "s3cr3t-pw"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def _with_credentials(url: str) -> str:
    return url.replace("http://", f"http://{USER}:{PASSWORD}@", 1)


@pytest.fixture
def other(tmp_path: Path) -> Iterator[Mirror]:
    """A second mirror on another port: another origin."""
    (tmp_path / "other").mkdir()
    m = Mirror(tmp_path / "other", tmp_path / "other-manifest.csv")
    m.start()
    try:
        yield m
    finally:
        m.stop()


def _serve_file(h: BaseHTTPRequestHandler, data: bytes, offset: int) -> int:
    h.send_response(200)
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)
    return len(data)


def _redirect_to(url: str):  # type: ignore[no-untyped-def]
    def respond(h: BaseHTTPRequestHandler, data: bytes, offset: int) -> int:
        h.send_response(302)
        h.send_header("Location", url)
        h.send_header("Content-Length", "0")
        h.end_headers()
        return 0

    return respond


def _no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text, text


def test_credentials_are_not_sent_to_another_origin_after_a_redirect(
    mirror: Mirror, other: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = mirror.add_month(*MONTH, rows=500)
    other.add_file(src)
    monkeypatch.setenv("TAXI_SOURCE_URL", _with_credentials(mirror.url))
    mirror.hijack(PATH, _redirect_to(other.url + PATH))
    other.hijack(PATH, _serve_file)
    result = cli("extract", *MONTH, "--json", "-v")
    assert result.exit_code == 0, result.stderr
    (first,) = mirror.gets(PATH)
    (second,) = other.gets(PATH)
    assert first.authorization == BASIC  # the origin it was given for gets it
    assert second.authorization is None  # the other origin does not
    _no_secret(result.stdout, result.stderr)
    assert (
        json.loads(result.stdout)["partitions"][0]["url"]
        == f"http://{USER}:***@{mirror.url[7:]}{PATH}"
    )


def test_credentials_follow_a_redirect_within_their_own_origin(
    mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror.add_month(*MONTH, rows=500)
    moved = "/green/moved.csv.gz"
    mirror.add_file(mirror.root / PATH.lstrip("/"), moved)
    monkeypatch.setenv("TAXI_SOURCE_URL", _with_credentials(mirror.url))
    mirror.hijack(PATH, _redirect_to(PREFIX + moved))  # a relative Location
    mirror.hijack(moved, _serve_file)
    result = cli("extract", *MONTH)
    assert result.exit_code == 0, result.stderr
    assert [g.authorization for g in mirror.gets()] == [BASIC, BASIC]
    _no_secret(result.stdout, result.stderr)


def test_errors_and_warnings_mask_the_credentials(
    mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAXI_HTTP_RETRIES", "1")
    mirror.add_month(*MONTH, rows=500)
    mirror.fail(PATH, [503, 503])
    monkeypatch.setenv("TAXI_SOURCE_URL", _with_credentials(mirror.url))
    result = cli("extract", *MONTH, "-v")
    assert result.exit_code == 1
    assert f"http://{USER}:***@127.0.0.1" in error_line(result)
    _no_secret(result.stdout, result.stderr)
    leftovers = [p.read_text() for p in Path.cwd().rglob("*.json")]
    _no_secret(*leftovers)


def test_a_token_user_name_is_masked_too(mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror.add_month(*MONTH, rows=500)
    mirror.fail(PATH, [404])
    monkeypatch.setenv("TAXI_SOURCE_URL", mirror.url.replace("http://", "http://ghp_TOKEN123@"))
    result = cli("extract", *MONTH)
    assert result.exit_code == 1
    assert "ghp_TOKEN123" not in result.stderr and "http://***@" in error_line(result)


def test_config_show_and_schedule_never_print_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAXI_SOURCE_URL", f"http://{USER}:{PASSWORD}@127.0.0.1:9/releases")
    shown = cli("config", "show")
    as_json = cli("config", "show", "--json")
    cron = cli("schedule", "cron")
    for result in (shown, as_json, cron):
        assert result.exit_code == 0, result.stderr
        _no_secret(result.stdout, result.stderr)
    assert f"http://{USER}:***@127.0.0.1:9/releases" in shown.stdout
    assert "TAXI_SOURCE_URL" in cron.stderr  # withheld, and the user is told where to put it


def test_log_lines_of_any_module_are_masked(
    mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    # backfill's catch-up probe logs the URL it failed on: the log handler masks it
    monkeypatch.setenv("TAXI_HTTP_RETRIES", "0")
    monkeypatch.setenv("TAXI_SOURCE_URL", _with_credentials(mirror.url))
    mirror.fail(rel_path("green", "2021-01"), [500] * 50)
    for fmt in ("text", "json"):
        result = cli(
            "backfill", "green", "2021-01", "--catch-up", "--target", "gcs", "--dry-run",
            "--log-format", fmt,
        )  # fmt: skip
        assert "probe of" in result.stderr, result.stderr
        _no_secret(result.stdout, result.stderr)
