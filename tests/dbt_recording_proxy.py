"""A recording HTTP proxy in front of an emulator: what the official clients really send.

Where an emulator cannot show real behaviour (partition decorators), a test asserts on
the exact REST requests instead: every request is forwarded unchanged to `upstream` and
recorded as (method, path, JSON body or None).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.http_host import local_http

_HOP = {"host", "content-length", "connection", "transfer-encoding", "accept-encoding"}


@dataclass
class Recorded:
    method: str
    path: str
    body: Any


@dataclass
class Proxy:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)

    def jobs(self) -> list[dict[str, Any]]:
        """The `configuration` of every job inserted through the proxy."""
        return [
            r.body["configuration"]
            for r in self.requests
            if r.method == "POST" and r.path.split("?")[0].endswith("/jobs") and r.body
        ]


@contextmanager
def recording_proxy(upstream: str) -> Iterator[Proxy]:
    proxy = Proxy()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _forward(self) -> None:
            data = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            try:
                body = json.loads(data) if data else None
            except ValueError:
                body = None
            proxy.requests.append(Recorded(self.command, self.path, body))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            request = urllib.request.Request(
                upstream + self.path, data=data or None, headers=headers, method=self.command
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as resp:
                    status, reply, reply_headers = resp.status, resp.read(), resp.headers
            except urllib.error.HTTPError as exc:
                status, reply, reply_headers = exc.code, exc.read(), exc.headers
            self.send_response(status)
            for key, value in reply_headers.items():
                if key.lower() not in _HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    with local_http(Handler) as proxy.url:
        yield proxy
