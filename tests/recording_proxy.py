"""A recording HTTP proxy in front of an emulator: what the official clients really send.

Every request taxi-cli's Google clients make goes through it and is recorded (method,
path, query, JSON body), so tests can assert on the REST contract where the emulators
cannot show real behaviour (IAM, locations, the sandbox, partition decorators).

One thing real BigQuery does that bqemulator does not: partition decorators. bqemulator
takes `tableId: "t$202004"` for a table of that name (and WRITE_TRUNCATE empties the
whole table). With `decorators=True` the proxy supplies the documented semantics so the
data can be checked end to end: a job writing `t$P` with WRITE_TRUNCATE first empties
partition P of `t` (a DELETE the proxy itself sends, never recorded), then runs as
WRITE_APPEND into `t`. BigQuery writes "directly into a specific segment of a
partitioned table without affecting other partitions"
(https://cloud.google.com/bigquery/docs/load-data-partitioned-tables); a MONTH
partition's decorator is `table$yyyymm`
(https://cloud.google.com/bigquery/docs/managing-partitioned-table-data).
On the emulator this is two steps, not atomic; real BigQuery's atomicity is a documented
property of one job, asserted here by the request shape (one job per month). The proxy
also relabels the `*/*` data part of the client's multipart load uploads, which
bqemulator refuses.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
}
_JOBS = re.compile(r"^/bigquery/v2/projects/(?P<project>[^/]+)/jobs$")


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    json: Any = None

    @property
    def job(self) -> dict[str, Any]:
        """The job configuration of a jobs.insert request ({} for anything else)."""
        if self.method == "POST" and _JOBS.match(self.path) and isinstance(self.json, dict):
            config = self.json.get("configuration", {})
            return config if isinstance(config, dict) else {}
        return {}


@dataclass
class RecordingProxy:
    upstream: str  # http://127.0.0.1:PORT
    decorators: bool = False
    requests: list[Recorded] = field(default_factory=list)
    # Failures to inject: (job kind, reason) for the next jobs.insert of that kind.
    failures: list[tuple[str, str]] = field(default_factory=list)
    _failed_jobs: dict[str, bytes] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.failures.clear()

    def fail_next(self, kind: str, reason: str) -> None:
        """The next `kind` job inserted finishes failed with `reason`, as BigQuery reports
        a job error: the insert answers the job resource with `status.errorResult`, and
        jobs.get answers the same (https://cloud.google.com/bigquery/docs/error-messages)."""
        with self._lock:
            self.failures.append((kind, reason))

    def recorded(self) -> list[Recorded]:
        with self._lock:
            return list(self.requests)

    def jobs(self, kind: str) -> list[dict[str, Any]]:
        """The `load` / `query` / `copy` configurations of every job inserted."""
        return [r.job[kind] for r in self.recorded() if kind in r.job]

    def start(self) -> RecordingProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # ---- forwarding -------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        split = urlsplit(handler.path)
        parsed: Any = None
        if body and "json" in (handler.headers.get("Content-Type") or ""):
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        record = Recorded(handler.command, split.path, parse_qs(split.query), body, parsed)
        with self._lock:
            self.requests.append(record)
        injected = self._injected(handler.command, split.path, record)
        if injected is not None:
            self._reply(handler, 200, [("Content-Type", "application/json")], injected)
            return
        if self.decorators and record.job:
            body = self._undecorate(split.path, record, body)
        if self.decorators and split.path.startswith("/upload/bigquery/"):
            # The client labels the data part of a multipart load `*/*`, which BigQuery
            # takes and bqemulator's whitelist does not (an emulator gap, not ours).
            body = re.sub(
                rb"(?im)^(content-type:\s*)\*/\*", rb"\1application/octet-stream", body, count=1
            )
        headers = {
            k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}
        }
        status, _, out_headers, payload = self._send(handler.command, handler.path, body, headers)
        self._reply(handler, status, out_headers, payload)

    def _injected(self, method: str, path: str, record: Recorded) -> bytes | None:
        with self._lock:
            if method == "GET":
                return self._failed_jobs.get(path.rsplit("/", 1)[-1])
            kind = next((k for k, _ in self.failures if k in record.job), None)
            if kind is None:
                return None
            reason = next(r for k, r in self.failures if k == kind)
            self.failures.remove((kind, reason))
            error = {"reason": reason, "message": f"injected by the recording proxy: {reason}"}
            resource = {
                "kind": "bigquery#job",
                "jobReference": record.json["jobReference"],
                "configuration": record.json["configuration"],
                "status": {"state": "DONE", "errorResult": error, "errors": [error]},
            }
            payload = json.dumps(resource).encode()
            self._failed_jobs[record.json["jobReference"]["jobId"]] = payload
            return payload

    def _reply(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        out_headers: list[tuple[str, str]],
        payload: bytes,
    ) -> None:
        handler.send_response(status)
        for key, value in out_headers:
            if key.lower() in HOP_BY_HOP:
                continue
            if key.lower() == "location":
                value = value.replace(self.upstream, self.url)
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _send(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        up = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(up.hostname or "127.0.0.1", up.port, timeout=300)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            response = conn.getresponse()
            return response.status, response.reason, response.getheaders(), response.read()
        finally:
            conn.close()

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        body = json.dumps(payload).encode() if payload is not None else b""
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        status, _, _, data = self._send(method, path, body, headers)
        if status >= 400:
            raise RuntimeError(f"recording proxy: {method} {path} -> {status}: {data[:300]!r}")
        return json.loads(data) if data else None

    # ---- partition decorators (bqemulator lacks them) ------------------------------------

    def _undecorate(self, path: str, record: Recorded, body: bytes) -> bytes:
        config = dict(record.job)
        kind = next((k for k in ("load", "query") if k in config), None)
        if kind is None:
            return body
        dest = config[kind].get("destinationTable") or {}
        table_id = str(dest.get("tableId", ""))
        if "$" not in table_id:
            return body
        table, partition = table_id.split("$", 1)
        project, dataset = dest["projectId"], dest["datasetId"]
        meta = self._call(
            "GET", f"/bigquery/v2/projects/{project}/datasets/{dataset}/tables/{table}"
        )
        column = meta["timePartitioning"]["field"]
        low, high = _partition_range(partition, meta["timePartitioning"]["type"])
        if config[kind].get("writeDisposition") == "WRITE_TRUNCATE":
            job_project = _JOBS.match(path)["project"]  # type: ignore[index]
            self._call(
                "POST",
                f"/bigquery/v2/projects/{job_project}/queries",
                {
                    "query": f"DELETE FROM `{project}.{dataset}.{table}` "
                    f"WHERE {column} >= DATE '{low}' AND {column} < DATE '{high}'",
                    "useLegacySql": False,
                    "timeoutMs": 120000,
                },
            )
        rewritten = json.loads(body)
        inner = rewritten["configuration"][kind]
        if kind == "load":
            inner["destinationTable"] = {**dest, "tableId": table}
            inner["writeDisposition"] = "WRITE_APPEND"
        else:
            # bqemulator keeps a query's WRITE_APPEND result in the job only: insert it.
            inner.pop("destinationTable")
            inner.pop("writeDisposition", None)
            inner.pop("createDisposition", None)
            inner["query"] = f"INSERT INTO `{project}.{dataset}.{table}`\n{inner['query']}"
        return json.dumps(rewritten).encode()


def _partition_range(partition: str, kind: str) -> tuple[date, date]:
    """`202004` (MONTH) or `20200401` (DAY) -> [first day, first day after)."""
    if kind == "MONTH":
        year, month = int(partition[:4]), int(partition[4:6])
        low = date(year, month, 1)
        high = date(year + month // 12, month % 12 + 1, 1)
        return low, high
    if kind == "DAY":
        low = date(int(partition[:4]), int(partition[4:6]), int(partition[6:8]))
        return low, date.fromordinal(low.toordinal() + 1)
    raise ValueError(f"recording proxy: partition type {kind} is not emulated")


def running(upstream: str, *, decorators: bool = False) -> Iterator[RecordingProxy]:
    proxy = RecordingProxy(upstream, decorators=decorators).start()
    try:
        yield proxy
    finally:
        proxy.stop()
