"""Fixtures: a local HTTP mirror of the release host, with a request log and faults.

The `mirror` fixture starts a threaded `http.server` on 127.0.0.1 (port 0) serving
`mirror.root` laid out like the release host:

    {url}/{taxi}/{taxi}_tripdata_{YYYY}-{MM}.csv.gz      {url}/misc/taxi_zone_lookup.csv

and points taxi-cli at it (`TAXI_SOURCE_URL`, a manifest of what it serves in
`TAXI_MANIFEST`, fast retries via `TAXI_HTTP_BACKOFF`). Absent files are 404s. It
supports HEAD, `Range: bytes=N-` / `N-M` (206 + Content-Range), ETag / Last-Modified and
If-Range, and these faults, each per URL path:

    mirror.fail(path, [500, 503])       the next requests get these statuses, then normal
    mirror.drop_after(path, 1000)       send the headers and 1000 body bytes, then hang up
    mirror.stall(path, 1000, 2.0)       send 1000 body bytes, then go silent for 2 s
    mirror.serve_html(path)             200 with an HTML error page instead of the file
    mirror.ignore_range(path)           answer every Range request with the full 200
    mirror.flaky(rate=0.3, seed=1)      seeded random 5xx/drops, at most `max_faults` a path
    mirror.hijack(path, respond)        `respond(handler, data, offset)` writes the whole raw
                                        response (for hostile servers: bad ranges, endless
                                        bodies, redirects); `offset` is the Range start asked

`mirror.log` lists every request (method, path, range, status, body bytes sent).
"""

from __future__ import annotations

import csv
import email.utils
import hashlib
import random
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypedDict, Unpack

import pytest

from taxi_cli import synthetic
from taxi_cli.catalog import TAXIS, ZONES_FILE, TaxiType, manifest

SHARED_DATA = Path(__file__).resolve().parent / "data"
REAL = SHARED_DATA / "real"
PREFIX = "/releases/download"  # the base URL has a path, like the GitHub release host
HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Error</title></head><body>rate limited</body></html>"
)


@dataclass(frozen=True)
class Request:
    """One request as the mirror saw it."""

    method: str
    path: str  # relative to the base URL, e.g. /green/green_tripdata_2020-04.csv.gz
    range: str | None
    status: int
    sent: int  # body bytes written
    if_range: str | None = None
    authorization: str | None = None  # the Authorization header, to prove where it went


@dataclass
class _Faults:
    statuses: list[int] = field(default_factory=list)
    drops: list[int] = field(default_factory=list)  # byte counts, one per faulty response
    html: int = 0  # responses left that serve HTML (-1: always)
    ignore_range: bool = False
    stalls: list[tuple[int, float]] = field(default_factory=list)  # (after bytes, seconds)


def _norm(path: str) -> str:
    path = path.split("?", 1)[0]
    return path if path.startswith("/") else "/" + path


def rel_path(taxi: TaxiType | str, month: str) -> str:
    """The URL path of a month relative to the base URL."""
    taxi = TAXIS[taxi] if isinstance(taxi, str) else taxi
    return f"/{taxi.name}/{taxi.file_name(month)}"


ZONES_PATH = f"/misc/{ZONES_FILE}"


class MonthOptions(TypedDict, total=False):
    """The keywords of `synthetic.write_month` that `Mirror.add_month` passes through."""

    seed: int
    gzip_it: bool
    crlf: bool
    vendorless_tail: float
    compresslevel: int
    header: tuple[str, ...] | None


class Mirror:
    """A running mirror: files under `root`, faults and a log keyed by URL path."""

    def __init__(self, root: Path, manifest_path: Path) -> None:
        self.root = root
        self.manifest_path = manifest_path
        self.log: list[Request] = []
        self._faults: dict[str, _Faults] = {}
        self._manifest = {name: (e.size, e.sha256) for name, e in manifest().items()}
        self._flaky: tuple[random.Random, float, int, tuple[str, ...]] | None = None
        self._flaky_count: dict[str, int] = {}
        self._hijacks: dict[str, Hijack] = {}
        self._lock = threading.Lock()
        # A handler logs a request after its last byte is sent, which can be after the
        # client has already acted on the response: readers of the log wait for them.
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._server: ThreadingHTTPServer | None = None
        self.url = ""
        self.write_manifest()

    # ---- content ------------------------------------------------------------------------

    def add_month(
        self,
        taxi: TaxiType | str,
        month: str,
        rows: int = 500,
        *,
        manifest: bool = True,
        **kwargs: Unpack[MonthOptions],
    ) -> Path:
        """Serve a synthetic month (`synthetic.write_month` kwargs pass through).

        With `manifest=True` the served manifest lists its size and sha256 (replacing a
        release entry of the same name), so taxi-cli accepts it as a release asset.
        """
        taxi = TAXIS[taxi] if isinstance(taxi, str) else taxi
        path = self.root / taxi.name / taxi.file_name(month)
        synthetic.write_month(path, taxi, month, rows, **kwargs)
        if manifest:
            self.register(path)
        return path

    def add_months(self, taxi: TaxiType | str, months: list[str], rows: int = 200) -> None:
        for month in months:
            self.add_month(taxi, month, rows)

    def add_file(self, src: Path, dest: str | None = None, *, manifest: bool = True) -> Path:
        """Serve a copy of `src` at `dest` (default: where its name belongs)."""
        target = self.root / (dest.lstrip("/") if dest else self._home_of(src.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        target.chmod(0o644)
        if manifest:
            self.register(target)
        return target

    def add_bytes(self, dest: str, data: bytes, *, manifest: bool = True) -> Path:
        target = self.root / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if manifest:
            self.register(target)
        return target

    def add_zones(self) -> Path:
        """Serve the real zone lookup (the release bytes: quoted, CRLF)."""
        return self.add_file(SHARED_DATA / ZONES_FILE)

    def remove(self, path: str) -> None:
        (self.root / _norm(path).lstrip("/")).unlink()

    @staticmethod
    def _home_of(name: str) -> str:
        if name == ZONES_FILE:
            return f"misc/{name}"
        taxi = name.split("_tripdata_", 1)[0]
        if taxi not in TAXIS:
            raise ValueError(f"cannot tell where {name} belongs; pass dest=")
        return f"{taxi}/{name}"

    # ---- manifest -----------------------------------------------------------------------

    def register(self, path: Path) -> None:
        """List `path` in the served manifest with its real size and sha256."""
        data = path.read_bytes()
        self.set_manifest(path.name, len(data), hashlib.sha256(data).hexdigest())

    def set_manifest(self, filename: str, size: int, sha256: str) -> None:
        self._manifest[filename] = (size, sha256)
        self.write_manifest()

    def drop_manifest(self, filename: str) -> None:
        self._manifest.pop(filename, None)
        self.write_manifest()

    def write_manifest(self) -> None:
        with self.manifest_path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["taxi", "month", "filename", "size_bytes", "sha256"])
            for name, (size, sha) in sorted(self._manifest.items()):
                writer.writerow(["", "", name, size, sha])

    # ---- faults -------------------------------------------------------------------------

    def _fault(self, path: str) -> _Faults:
        return self._faults.setdefault(_norm(path), _Faults())

    def fail(self, path: str, statuses: list[int]) -> None:
        """The next len(statuses) requests of `path` get these statuses (no body)."""
        with self._lock:
            self._fault(path).statuses.extend(statuses)

    def drop_after(self, path: str, nbytes: int, times: int = 1) -> None:
        """The next `times` responses of `path` stop after `nbytes` body bytes."""
        with self._lock:
            self._fault(path).drops.extend([nbytes] * times)

    def stall(self, path: str, after: int, seconds: float, times: int = 1) -> None:
        """The next `times` responses of `path` go silent for `seconds` after `after` bytes
        (then hang up), as a stuck connection does: the client's read timeout fires."""
        with self._lock:
            self._fault(path).stalls.extend([(after, seconds)] * times)

    def serve_html(self, path: str, times: int = -1) -> None:
        """Answer `path` with 200 and an HTML page (`times` responses; -1 = always)."""
        with self._lock:
            self._fault(path).html = times

    def ignore_range(self, path: str) -> None:
        """Answer `path` with the full 200 even when a Range was asked for."""
        with self._lock:
            self._fault(path).ignore_range = True

    def hijack(self, path: str, respond: Hijack) -> None:
        """Answer GETs of `path` with `respond(handler, file bytes, range start)`, which
        writes status, headers and body itself and returns the body bytes it sent."""
        with self._lock:
            self._hijacks[_norm(path)] = respond

    def flaky(
        self,
        rate: float = 0.3,
        *,
        seed: int = 0,
        max_faults: int = 2,
        kinds: tuple[str, ...] = ("500", "502", "503", "drop"),
    ) -> None:
        """Seeded random faults on GETs: each path fails at most `max_faults` times.

        Keep `max_faults` below taxi-cli's retry budget (TAXI_HTTP_RETRIES) and every
        download eventually succeeds, whatever the thread interleaving.
        """
        with self._lock:
            self._flaky = (random.Random(seed), rate, max_faults, kinds)

    # ---- log ----------------------------------------------------------------------------

    def requests(self, path: str | None = None, method: str | None = None) -> list[Request]:
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=10)
            return [
                r
                for r in self.log
                if (path is None or r.path == _norm(path))
                and (method is None or r.method == method)
            ]

    def gets(self, path: str | None = None) -> list[Request]:
        return self.requests(path, "GET")

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()

    # ---- server side --------------------------------------------------------------------

    def _record(self, req: Request) -> None:
        with self._lock:
            self.log.append(req)

    def _begin(self) -> None:
        with self._idle:
            self._in_flight += 1

    def _end(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def _take_fault(
        self, path: str, method: str
    ) -> tuple[int | None, int | None, bool, bool, tuple[int, float] | None]:
        """(status, drop_after, html, ignore_range, stall) for this request (one-shots used)."""
        with self._lock:
            f = self._faults.get(path, _Faults())
            status = f.statuses.pop(0) if f.statuses else None
            drop = None
            html = False
            stall = None
            if status is None and method == "GET":
                if f.stalls:
                    stall = f.stalls.pop(0)
                if f.drops:
                    drop = f.drops.pop(0)
                if f.html:
                    html = True
                    if f.html > 0:
                        f.html -= 1
                if status is None and drop is None and not html and self._flaky:
                    rng, rate, cap, kinds = self._flaky
                    if self._flaky_count.get(path, 0) < cap and rng.random() < rate:
                        self._flaky_count[path] = self._flaky_count.get(path, 0) + 1
                        kind = rng.choice(kinds)
                        if kind == "drop":
                            drop = rng.randint(0, 4096)
                        else:
                            status = int(kind)
            return status, drop, html, f.ignore_range, stall

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}{PREFIX}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


Hijack = Callable[[BaseHTTPRequestHandler, bytes, int], int]
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def _handler_for(mirror: Mirror) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # the mirror keeps its own log

        def do_HEAD(self) -> None:
            mirror._begin()
            try:
                self._serve(head=True)
            finally:
                mirror._end()

        def do_GET(self) -> None:
            mirror._begin()
            try:
                self._serve(head=False)
            finally:
                mirror._end()

        def _plain(self, path: str, status: int, rng: str | None, body: bytes = b"") -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)
            mirror._record(Request(self.command, path, rng, status, len(body)))

        def _serve(self, head: bool) -> None:
            raw = self.path.split("?", 1)[0]
            rng = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            if not raw.startswith(PREFIX + "/"):
                self._plain(raw, 404, rng, b"Not Found")
                return
            path = raw[len(PREFIX) :]
            hijack = mirror._hijacks.get(path)
            if hijack is not None and self.command == "GET":
                file = mirror.root / path.lstrip("/")
                data = file.read_bytes() if file.is_file() else b""
                m = _RANGE.match(rng or "")
                sent = hijack(self, data, int(m.group(1)) if m else 0)
                self.close_connection = True
                auth = self.headers.get("Authorization")
                mirror._record(Request("GET", path, rng, 0, sent, if_range, auth))
                return
            status, drop, html, ignore_range, stall = mirror._take_fault(path, self.command)
            if status is not None:
                self._plain(path, status, rng, f"injected {status}".encode())
                return
            file = (mirror.root / path.lstrip("/")).resolve()
            if mirror.root.resolve() not in file.parents or not file.is_file():
                self._plain(path, 404, rng, b"Not Found")
                return
            if html:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(HTML_PAGE)))
                self.end_headers()
                self.wfile.write(HTML_PAGE)
                mirror._record(Request("GET", path, rng, 200, len(HTML_PAGE), if_range))
                return
            data = file.read_bytes()
            etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
            modified = email.utils.formatdate(file.stat().st_mtime, usegmt=True)
            start, end = 0, len(data)
            code = 200
            m = _RANGE.match(rng or "")
            if rng and m and not ignore_range and if_range in (None, etag, modified):
                start = int(m.group(1))
                end = min(int(m.group(2)) + 1, len(data)) if m.group(2) else len(data)
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    mirror._record(Request(self.command, path, rng, 416, 0, if_range))
                    return
                code = 206
            body = data[start:end]
            self.send_response(code)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", modified)
            if code == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
            self.end_headers()
            if head:
                mirror._record(Request("HEAD", path, rng, code, 0, if_range))
                return
            if stall is not None:
                sent = min(stall[0], len(body))
                self.wfile.write(body[:sent])
                self.wfile.flush()
                mirror._record(Request("GET", path, rng, code, sent, if_range))
                time.sleep(stall[1])
                self.close_connection = True
                return
            if drop is not None:
                sent = min(drop, len(body))
                self.wfile.write(body[:sent])
                self.wfile.flush()
                self.close_connection = True
                mirror._record(Request("GET", path, rng, code, sent, if_range))
                return
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                mirror._record(Request("GET", path, rng, code, -1, if_range))
                return
            mirror._record(Request("GET", path, rng, code, len(body), if_range))

    return Handler


@pytest.fixture
def mirror(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Mirror]:
    """A running release mirror; taxi-cli is pointed at it through the environment."""
    base = tmp_path_factory.mktemp("mirror")
    root = base / "root"
    root.mkdir()
    m = Mirror(root, base / "manifest.csv")
    m.start()
    monkeypatch.setenv("TAXI_SOURCE_URL", m.url)
    monkeypatch.setenv("TAXI_MANIFEST", str(m.manifest_path))
    monkeypatch.setenv("TAXI_HTTP_BACKOFF", "0.01")
    monkeypatch.setenv("TAXI_HTTP_BACKOFF_MAX", "0.05")
    try:
        yield m
    finally:
        m.stop()
