"""Resumable, retrying HTTP downloads into a `.part` file, bounded in time and size.

`fetch` streams a URL into `part`. When `part` already holds bytes (an interrupted run,
a dropped connection) it asks for the rest with `Range: bytes=N-` and `If-Range` (the
ETag or Last-Modified seen before, kept in `{part}.json`), so a changed asset restarts
from zero instead of being spliced. A server that ignores Range (200) restarts the file.

Retries: timeouts, dropped connections, 429 and 5xx are retried with exponential backoff
and jitter: `http_backoff * 2**n`, capped at `http_backoff_max`, a random 50-100% of it
(or the server's Retry-After, capped the same way). The budget is `http_retries`
consecutive failures without progress, and progress means the `.part` got further than
it ever got in this run: a server that drops the connection after the same byte count
every time (and ignores Range) runs out of budget like a dead one. A host that cannot
be reached at all (refused, no DNS, no route) gets `CONNECT_RETRIES` short retries, one
that times out connecting (`CONNECT_TIMEOUT`) none, and then a `ConnectError` (exit 3),
not the whole backoff budget. Once the host has answered in a run, a connect error is an
ordinary transient failure.

Size: nothing is written past the expected size: the release manifest's, else the
length the server announced, else `MAX_UNKNOWN_SIZE`. A longer (or endless) body is cut
there and rejected. A 404 is final; so are a redirect loop, more than `MAX_REDIRECTS`
redirects, a malformed `Content-Range` and a 206 for another offset (one-line errors).

Redirects are followed here, not by httpx, so that credentials in the URL
(`http://user:pw@mirror/...`) go only to the origin they were given for: a redirect to
another scheme, host or port drops them. URLs in messages and `{part}.json` are masked.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from taxi_cli import __version__
from taxi_cli.config import Settings
from taxi_cli.errors import ConfigError, ConnectError, DownloadError, TransientError
from taxi_cli.oserrors import disk_error
from taxi_cli.redact import mask_url
from taxi_cli.retry import backoff_delay, retry_with

__all__ = [
    "CONNECT_BACKOFF_MAX",
    "CONNECT_RETRIES",
    "Fetched",
    "NotFound",
    "backoff_delay",
    "connect_error",
    "discard",
    "fetch",
    "make_client",
    "resumable",
]

log = logging.getLogger("taxi_cli.download")

MAX_REDIRECTS = 10
CONNECT_TIMEOUT = 5.0  # seconds for a TCP/TLS handshake: a live host answers far sooner
CONNECT_RETRIES = 2  # quick retries of a refused/unresolved host (a blip, not an outage)
CONNECT_BACKOFF_MAX = 1.0
# No manifest entry and no length announced: the largest release file is ~144 MB.
MAX_UNKNOWN_SIZE = 1 << 30
Progress = Callable[[int, int | None], None]  # (bytes so far, total if known)
_REDIRECTS = (301, 302, 303, 307, 308)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


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
    """An httpx client with the configured timeouts; follows the release host's redirects
    (`fetch` follows them itself, see the module doc)."""
    timeout = httpx.Timeout(cfg.http_timeout, connect=min(cfg.http_timeout, CONNECT_TIMEOUT))
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
    if not isinstance(meta, dict) or meta.get("url") != mask_url(url):
        return None
    value = meta.get("etag") or meta.get("last_modified")
    return str(value) if value else None


def _write_validator(part: Path, url: str, response: httpx.Response) -> None:
    etag = response.headers.get("ETag")
    if etag and etag.startswith("W/"):
        etag = None  # a weak ETag cannot validate a byte range
    meta = {
        "url": mask_url(url),  # the key to match, never the credentials
        "etag": etag,
        "last_modified": response.headers.get("Last-Modified"),
    }
    meta_path = _meta_path(part)
    try:
        meta_path.write_text(json.dumps(meta))
    except OSError as exc:
        raise disk_error(exc, meta_path) from exc


def resumable(part: Path) -> bool:
    """True when `part` holds bytes and a validator that a later Range request can use."""
    try:
        meta = json.loads(_meta_path(part).read_text())
        return part.stat().st_size > 0 and bool(meta.get("etag") or meta.get("last_modified"))
    except (OSError, ValueError, AttributeError):
        return False


def discard(part: Path) -> None:
    """Remove a partial download and its validator."""
    part.unlink(missing_ok=True)
    _meta_path(part).unlink(missing_ok=True)


class _Retry(Exception):
    def __init__(self, reason: str, retry_after: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Unreachable(_Retry):
    """The host did not answer at all (refused, no DNS, no route, connect timeout)."""

    def __init__(self, reason: str, *, timed_out: bool) -> None:
        super().__init__(reason)
        self.timed_out = timed_out  # already waited CONNECT_TIMEOUT: not worth another


def _describe(exc: BaseException) -> str:
    text = mask_url(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def _next_url(current: httpx.URL, response: httpx.Response, first: httpx.URL) -> httpx.URL:
    location = response.headers.get("Location")
    if not location:
        raise DownloadError(
            f"HTTP {response.status_code} without a Location for {mask_url(str(current))}; "
            "check the mirror (--source-url / TAXI_SOURCE_URL)"
        )
    try:
        target = current.join(location)
    except httpx.InvalidURL as exc:
        raise DownloadError(
            f"a redirect to an invalid URL from {mask_url(str(current))}; check the mirror"
        ) from exc
    if target.scheme not in ("http", "https"):
        raise DownloadError(
            f"a redirect to a {target.scheme}: URL from {mask_url(str(current))}; check the mirror"
        )
    if _origin(target) != _origin(first):
        return target.copy_with(userinfo=b"")  # credentials stay with their own origin
    if first.userinfo and not target.userinfo:
        return target.copy_with(userinfo=first.userinfo)
    return target


def _parse_content_range(value: str, url: str) -> tuple[int, int, int | None]:
    m = _CONTENT_RANGE.match(value.strip())
    if not m or int(m.group(2)) < int(m.group(1)):
        raise DownloadError(
            f"malformed Content-Range {value[:60]!r} from {mask_url(url)}; "
            "the mirror does not speak HTTP ranges correctly: fix it or run with --force"
        )
    total = None if m.group(3) == "*" else int(m.group(3))
    return int(m.group(1)), int(m.group(2)), total


def _limit(expected_size: int | None, announced: int | None, url: str) -> int:
    """The most bytes the file may have: the manifest's size, else the announced one."""
    if expected_size is not None:
        if announced is not None and announced > expected_size:
            raise DownloadError(
                f"{mask_url(url)} announces {announced:,} bytes, more than the {expected_size:,} "
                "of the release manifest: not the release file; check the mirror"
            )
        return expected_size  # a shorter body is fetched and then fails verification
    return announced if announced is not None else MAX_UNKNOWN_SIZE


def _too_long(limit: int, url: str) -> DownloadError:
    return DownloadError(
        f"{mask_url(url)} sent more than the {limit:,} bytes expected; the download was cut "
        "off there and discarded: check the mirror"
    )


def _attempt(
    client: httpx.Client,
    url: str,
    part: Path,
    progress: Progress | None,
    expected_size: int | None,
) -> bool:
    """One GET into `part` (following redirects); returns whether it resumed."""
    offset = part.stat().st_size if part.exists() else 0
    headers: dict[str, str] = {}
    validator = _read_validator(part, url) if offset else None
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator
    first = current = httpx.URL(url)
    seen = {str(current)}
    for _ in range(MAX_REDIRECTS + 1):
        try:
            with client.stream("GET", current, headers=headers, follow_redirects=False) as response:
                if response.status_code in _REDIRECTS:
                    current = _next_url(current, response, first)
                    if str(current) in seen:
                        raise DownloadError(
                            f"redirect loop at {mask_url(str(current))} (from {mask_url(url)}); "
                            "check the mirror (--source-url / TAXI_SOURCE_URL)"
                        )
                    seen.add(str(current))
                    continue
                return _receive(response, url, part, offset, progress, expected_size)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _Unreachable(
                _describe(exc), timed_out=isinstance(exc, httpx.ConnectTimeout)
            ) from exc
        except httpx.UnsupportedProtocol as exc:
            raise ConfigError(
                f"cannot download {mask_url(url)}: {exc}; set --source-url / TAXI_SOURCE_URL "
                "to an http:// or https:// URL"
            ) from exc
        except httpx.TransportError as exc:  # a timeout or a drop before the body
            raise _Retry(_describe(exc)) from exc
    raise DownloadError(
        f"more than {MAX_REDIRECTS} redirects from {mask_url(url)}; "
        "check the mirror (--source-url / TAXI_SOURCE_URL)"
    )


def _receive(
    response: httpx.Response,
    url: str,
    part: Path,
    offset: int,
    progress: Progress | None,
    expected_size: int | None,
) -> bool:
    """Write the body of a final (non-redirect) response into `part`."""
    status = response.status_code
    shown = mask_url(url)
    if status in (404, 410):
        raise NotFound(f"HTTP {status} for {shown}")
    if status == 416 and offset:
        discard(part)  # our partial file is longer than the asset: start over
        raise _Retry("the partial file does not fit the asset (HTTP 416)")
    if status == 429 or status >= 500:
        raise _Retry(f"HTTP {status}", response.headers.get("Retry-After"))
    if status not in (200, 206):
        raise DownloadError(f"HTTP {status} for {shown}; check the URL and --source-url")
    length = response.headers.get("Content-Length", "").strip()
    length_n = int(length) if length.isdigit() else None
    resumed = False
    if status == 206:
        start, end, total = _parse_content_range(response.headers.get("Content-Range", ""), url)
        if start != offset:
            discard(part)
            raise DownloadError(
                f"{shown} answered a request for byte {offset:,} on with bytes from {start:,}; "
                "the mirror does not speak HTTP ranges correctly: fix it or run with --force"
            )
        if length_n is not None and length_n != end - start + 1:
            discard(part)
            raise DownloadError(
                f"{shown}: Content-Length {length_n:,} does not match Content-Range "
                f"{start}-{end}; check the mirror"
            )
        announced = total if total is not None else None
        mode = "ab"
        resumed = offset > 0
    else:
        if offset:
            log.debug("server ignored the Range request; restarting %s", part.name)
        offset = 0
        announced = length_n
        mode = "wb"
    limit = _limit(expected_size, announced, url)
    if offset > limit:
        discard(part)
        raise _Retry("the partial file is longer than the asset")
    _write_validator(part, url, response)
    done = offset
    if progress:
        progress(done, announced if announced is not None else expected_size)
    try:
        fh = part.open(mode, buffering=0)  # unbuffered: a failed write fails here, not at close
    except OSError as exc:
        raise disk_error(exc, part) from exc
    with fh:
        try:
            for chunk in response.iter_raw():
                if len(chunk) > limit - done:
                    fh.close()
                    discard(part)
                    raise _too_long(limit, url)
                _write_all(fh, chunk)
                done += len(chunk)
                if progress:
                    progress(done, announced if announced is not None else expected_size)
        except httpx.TransportError as exc:
            raise _Retry(_describe(exc)) from exc
        except OSError as exc:
            fh.close()
            raise _disk_full(exc, part) from exc
    target = announced if announced is not None else expected_size
    if target is not None and done != target:
        raise _Retry("the body ended early")
    return resumed


def _write_all(fh: IO[bytes], data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = fh.write(view) or 0
        if not written:  # a raw write that takes nothing: treat it as the disk being full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def _disk_full(exc: OSError, part: Path) -> Exception:
    """A failed write: keep the `.part` only when a later run can resume it."""
    if resumable(part):
        note = f" ({part.stat().st_size:,} bytes kept in {part.name}; the next run resumes)"
    else:
        discard(part)
        note = " (the partial file was removed)"
    return disk_error(exc, part, note=note)


def _label(part: Path) -> str:
    return part.name.removesuffix(".part")


def connect_error(url: str, reason: str) -> ConnectError:
    """The one-line exit-3 error for a source host that cannot be reached (masked)."""
    return _connect_error(url, reason)


def _connect_error(url: str, reason: str) -> ConnectError:
    u = httpx.URL(url)
    host = f"{u.host}:{u.port}" if u.port else u.host
    return ConnectError(
        f"cannot connect to {host} ({reason}); check the network, or point --source-url / "
        f"TAXI_SOURCE_URL at a reachable mirror (python -m taxi_cli.mirror DIR)"
    )


def fetch(
    client: httpx.Client,
    url: str,
    part: Path,
    cfg: Settings,
    *,
    expected_size: int | None = None,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Fetched:
    """Download `url` into `part`, resuming what is there; retry per the settings.

    `expected_size` (the release manifest's) bounds what is written: see the module doc.
    """
    try:
        part.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise disk_error(exc, part.parent) from exc
    budget = _Budget(cfg, url, part)
    resumed_any = False

    def once() -> None:
        nonlocal resumed_any
        resumed_any = _attempt(client, url, part, progress, expected_size) or resumed_any

    _, attempts = retry_with(once, budget, sleep=sleep)
    return Fetched(url, part.stat().st_size, resumed_any, attempts)


class _Budget:
    """The retry policy of one download (`taxi_cli.retry.Policy`).

    A host that never answered gets CONNECT_RETRIES short tries (exit 3 after that, or
    at once after a connect timeout). Once it answered, `http_retries` failures in a row
    without progress give up; a failure after the file got further than it ever did
    restarts that count, so a slow but moving link finishes and a dead one fails fast.
    """

    def __init__(self, cfg: Settings, url: str, part: Path) -> None:
        self.cfg, self.url, self.part = cfg, url, part
        self.failures = 0
        self.unreachable = 0
        self.answered = False  # the host answered at least once in this run
        self.best = part.stat().st_size if part.exists() else 0  # furthest it ever got

    def delay(self, error: Exception, attempt: int) -> float | None:
        if isinstance(error, _Unreachable) and not self.answered:
            self.unreachable += 1
            if self.unreachable > CONNECT_RETRIES or error.timed_out:
                raise _connect_error(self.url, error.reason) from error
            wait = min(backoff_delay(self.cfg, self.unreachable), CONNECT_BACKOFF_MAX)
            log.warning("%s: %s; retrying in %.1fs", _label(self.part), error.reason, wait)
            return wait
        if isinstance(error, _Unreachable):
            self.failures += 1
            retry_after = None
        elif isinstance(error, _Retry):
            self.answered = True
            retry_after = error.retry_after
            now = self.part.stat().st_size if self.part.exists() else 0
            if now > self.best:
                self.best = now
                self.failures = 1  # the file got further than ever: the budget starts again
            else:
                self.failures += 1
        else:
            return None  # not a retryable failure: raised as it is
        if self.failures > self.cfg.http_retries:
            then = "run again (it resumes)"
            if self.part.exists() and not resumable(self.part):
                discard(self.part)  # no ETag or Last-Modified: a later Range could splice
                then = "run again"
            raise TransientError(
                f"download of {mask_url(self.url)} failed after {attempt} attempts: "
                f"{error.reason}; check the network or the mirror, then {then}"
            ) from error
        wait = backoff_delay(self.cfg, self.failures, retry_after)
        log.warning(
            "%s: %s; retrying in %.1fs (%d/%d)",
            _label(self.part),
            error.reason,
            wait,
            self.failures,
            self.cfg.http_retries,
        )
        return wait


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
