"""Serve local release files over HTTP in the release host's layout, for closed networks.

    python -m taxi_cli.mirror DIR [DIR ...] [--port 8000] [--host 127.0.0.1]
    export TAXI_SOURCE_URL=http://127.0.0.1:8000

`GET /<any prefix>/green/green_tripdata_2020-04.csv.gz` and `.../misc/taxi_zone_lookup.csv`
are answered with the file of that *name* found in the given directories (searched
recursively, first match wins), so a flat folder of downloads works as well as a copy
of the release tree. Anything else is a 404. Standard library only: copy this file to a
machine without taxi-cli and run it with any Python 3.11+.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# the file names of the release (trip months and the zone lookup); nothing else is served
_RELEASE_NAME = re.compile(r"^(?:[a-z]+_tripdata_\d{4}-\d{2}\.csv\.gz|taxi_zone_lookup\.csv)$")


def index(roots: Sequence[Path]) -> dict[str, Path]:
    """Release file name -> local path, first root (then sorted path) wins."""
    found: dict[str, Path] = {}
    for root in roots:
        candidates = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in candidates:
            if path.is_file() and _RELEASE_NAME.match(path.name):
                found.setdefault(path.name, path)
    return found


def _handler(files: dict[str, Path], *, log: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            if log:
                sys.stderr.write("mirror: " + (format % args) + "\n")

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, *, body: bool) -> None:
            name = self.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
            path = files.get(name)
            if path is None:
                self.send_error(404, f"{name} is not served by this mirror")
                return
            size = path.stat().st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if body:
                with path.open("rb") as src:
                    while chunk := src.read(1 << 20):
                        self.wfile.write(chunk)

    return Handler


class Mirror:
    """A running mirror (in a background thread); `url` is its TAXI_SOURCE_URL."""

    def __init__(
        self, roots: Sequence[Path], host: str = "127.0.0.1", port: int = 0, *, log: bool = False
    ) -> None:
        self.files = index(roots)
        self._server = ThreadingHTTPServer((host, port), _handler(self.files, log=log))
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}/releases/download"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Mirror:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m taxi_cli.mirror",
        description="Serve local release files in the release host's layout.",
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="folders holding release files")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    missing = [str(d) for d in args.dirs if not d.exists()]
    if missing:
        parser.error(f"no such directory: {', '.join(missing)}")
    mirror = Mirror(args.dirs, args.host, args.port, log=True)
    if not mirror.files:
        parser.error("no release files (e.g. green_tripdata_2020-04.csv.gz) in those folders")
    print(f"serving {len(mirror.files)} files; export TAXI_SOURCE_URL={mirror.url}", flush=True)
    with mirror:
        try:
            mirror._thread.join()
        except KeyboardInterrupt:
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
