"""Resumable, retrying HTTP downloads into a `.part` file.

`fetch` streams a URL into `part`. When `part` already holds bytes (an interrupted run,
a dropped connection) it asks for the rest with `Range: bytes=N-` and `If-Range` (the
ETag or Last-Modified seen before, kept in `{part}.json`), so a changed asset restarts
from zero instead of being spliced. A server that ignores Range (200) restarts the file.

Connection errors, timeouts, 429 and 5xx are retried with exponential backoff and
jitter: `http_backoff * 2**n`, capped at `http_backoff_max`, a random 50-100% of it
(or the server's Retry-After, capped the same way). The budget is `http_retries`
consecutive failures without progress: an attempt that received bytes resets it, so a
slow but moving link finishes while a dead one fails fast. A 404 is final.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from taxi_cli import __version__
from taxi_cli.config import Settings
from taxi_cli.errors import DownloadError, TransientError
from taxi_cli.retry import backoff_delay

__all__ = ["Fetched", "NotFound", "backoff_delay", "discard", "fetch", "make_client"]

log = logging.getLogger("taxi_cli.download")

CHUNK = 1 << 20
Progress = Callable[[int, int | None], None]  # (bytes so far, total if known)


class NotFound(DownloadError):
    """The server has no such file (HTTP 404/410)."""


@dataclass(frozen=True)
class Fetched:
    """What a finished download looked like."""

    url: str
    size: int
    resumed: bool  # at least one Range request continued a partial file
    attempts: int


def make_client(cfg: Settings) -> httpx.Client:
    """An httpx client with the configured timeouts; follows the release host's redirects."""
    timeout = httpx.Timeout(cfg.http_timeout, connect=min(cfg.http_timeout, 30.0))
    return httpx.Client(
        timeout=timeout,
        follow_redirects=True,
        # identity: the bytes on disk must be the asset's bytes, hashed as published
        headers={"User-Agent": f"taxi-cli/{__version__}", "Accept-Encoding": "identity"},
    )


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _read_validator(part: Path, url: str) -> str | None:
    try:
        meta = json.loads(_meta_path(part).read_text())
    except (OSError, ValueError):
        return None
    if meta.get("url") != url:
        return None
    value = meta.get("etag") or meta.get("last_modified")
    return str(value) if value else None


def _write_validator(part: Path, url: str, response: httpx.Response) -> None:
    etag = response.headers.get("ETag")
    if etag and etag.startswith("W/"):
        etag = None  # a weak ETag cannot validate a byte range
    meta = {"url": url, "etag": etag, "last_modified": response.headers.get("Last-Modified")}
    _meta_path(part).write_text(json.dumps(meta))


def discard(part: Path) -> None:
    """Remove a partial download and its validator."""
    part.unlink(missing_ok=True)
    _meta_path(part).unlink(missing_ok=True)


class _Retry(Exception):
    def __init__(self, reason: str, retry_after: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Progressed(_Retry):
    """A failed attempt that still wrote bytes (the retry budget restarts)."""

    def __init__(self, received: int, exc: BaseException | None) -> None:
        reason = _describe(exc) if exc else "the body ended early"
        super().__init__(reason)
        self.received = received


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _total_from(response: httpx.Response, offset: int) -> int | None:
    length = response.headers.get("Content-Length")
    if response.status_code == 206:
        crange = response.headers.get("Content-Range", "")
        _, _, total = crange.rpartition("/")
        if total.isdigit():
            return int(total)
    return offset + int(length) if length and length.isdigit() else None


def _attempt(
    client: httpx.Client, url: str, part: Path, progress: Progress | None
) -> tuple[int, bool]:
    """One GET into `part`; returns (bytes received this attempt, resumed)."""
    offset = part.stat().st_size if part.exists() else 0
    headers: dict[str, str] = {}
    validator = _read_validator(part, url) if offset else None
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator
    received = 0
    with client.stream("GET", url, headers=headers) as response:
        status = response.status_code
        if status in (404, 410):
            raise NotFound(f"HTTP {status} for {url}")
        if status == 416 and offset:
            discard(part)  # our partial file is longer than the asset: start over
            raise _Retry("the partial file does not fit the asset (HTTP 416)")
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}", response.headers.get("Retry-After"))
        if status not in (200, 206):
            raise DownloadError(f"HTTP {status} for {url}; check the URL and --source-url")
        resumed = False
        if status == 206 and offset:
            start = response.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
            if start != str(offset):
                discard(part)
                raise _Retry(f"the server resumed at byte {start}, not {offset}")
            mode = "ab"
            resumed = True
        else:
            if offset:
                log.debug("server ignored the Range request; restarting %s", part.name)
            offset = 0
            mode = "wb"
        _write_validator(part, url, response)
        total = _total_from(response, offset)
        done = offset
        if progress:
            progress(done, total)
        try:
            with part.open(mode) as fh:
                for chunk in response.iter_raw():
                    fh.write(chunk)
                    received += len(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
        except httpx.TransportError as exc:
            # bytes already on disk count as progress: the next attempt resumes after them
            if received:
                raise _Progressed(received, exc) from exc
            raise _Retry(_describe(exc)) from exc
        if total is not None and done != total:
            if received:
                raise _Progressed(received, None)
            raise _Retry("the body ended early")
    return received, resumed


def fetch(
    client: httpx.Client,
    url: str,
    part: Path,
    cfg: Settings,
    *,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Fetched:
    """Download `url` into `part`, resuming what is there; retry per the settings."""
    part.parent.mkdir(parents=True, exist_ok=True)
    failures = 0
    attempts = 0
    resumed_any = False
    while True:
        attempts += 1
        try:
            _, resumed = _attempt(client, url, part, progress)
            resumed_any = resumed_any or resumed
            return Fetched(url, part.stat().st_size, resumed_any, attempts)
        except _Progressed as exc:
            failures = 1  # progress was made: the budget starts again
            reason, retry_after = exc.reason, None
        except _Retry as exc:
            failures += 1
            reason, retry_after = exc.reason, exc.retry_after
        except httpx.TransportError as exc:  # connect errors, timeouts before the body
            failures += 1
            reason, retry_after = _describe(exc), None
        if failures > cfg.http_retries:
            raise TransientError(
                f"download of {url} failed after {attempts} attempts: {reason}; "
                "check the network or the mirror, then run again (it resumes)"
            )
        delay = backoff_delay(cfg, failures, retry_after)
        log.warning(
            "%s: %s; retrying in %.1fs (%d/%d)",
            part.name.removesuffix(".part"),
            reason,
            delay,
            failures,
            cfg.http_retries,
        )
        sleep(delay)


def validators(part: Path) -> tuple[str | None, str | None]:
    """(ETag, Last-Modified) of the response that wrote `part`, as kept for If-Range;
    read before `discard`, so the ledger can record which upstream version was loaded."""
    try:
        meta = json.loads(_meta_path(part).read_text())
    except (OSError, ValueError):
        return None, None
    if not isinstance(meta, dict):
        return None, None
    etag, modified = meta.get("etag"), meta.get("last_modified")
    return (etag if isinstance(etag, str) else None), (
        modified if isinstance(modified, str) else None
    )
