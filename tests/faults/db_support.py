"""Shared pieces of the database and settings fault tests: restricted roles on the
embedded server, a TCP front for it, and the real CLI in a subprocess. (A module rather
than a conftest, so that other fault files can share tests/faults/; a test module that
needs `admin` or `tcp_front` binds them: `admin = db_support.admin`.)

Every fault is real: roles are created with SQL on the test's own database, the TCP
front forwards bytes to the server's unix socket (so `localhost` and `127.0.0.1` reach
the same server, and a cut connection is a real one), and the CLI runs as a process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from tests.pg_helpers import CLI

SECRET = "s3cr3t-Pw-never-shown"


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    @property
    def error_line(self) -> str:
        """The one stderr line of a failed run (asserts that it is one line)."""
        lines = [line for line in self.err.splitlines() if line.startswith("taxi-cli: error:")]
        assert len(lines) == 1, self.err
        assert "Traceback" not in self.err and "psycopg" not in self.err, self.err
        return lines[0]


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Run:
    """Run the installed taxi-cli with the test's environment (plus `env`)."""
    full = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [CLI, *args], env=full, capture_output=True, text=True, timeout=timeout, check=False
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full = {**os.environ, **(env or {})}
    return subprocess.Popen(
        [CLI, *args], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> Run:
    out, err = proc.communicate(timeout=timeout)
    return Run(proc.returncode, out, err)


def interrupt(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM) -> Run:
    """Send `sig`; the run must end by itself (a generous bound, not a timing claim)."""
    proc.send_signal(sig)
    return finish(proc, timeout=60)


def role_url(url: str, user: str, password: str = SECRET, **params: str) -> str:
    """`url` (the embedded server's socket URL) for another role, with a password."""
    parts = urlsplit(url)
    query = "&".join([parts.query, *(f"{k}={v}" for k, v in params.items())]).strip("&")
    return f"postgresql://{user}:{password}@{parts.path}?{query}"


def make_role(admin: psycopg.Connection, *grants: str, options: str = "") -> str:
    """A login role (trust auth: the password only has to be kept secret) with `grants`,
    each an SQL statement with {role} for its name; returns the name."""
    name = f"r_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{SECRET}' {options}".strip())
    for grant in grants:
        admin.execute(grant.format(role=f'"{name}"'))
    return name


@pytest.fixture
def admin(pg_url: str) -> Iterator[psycopg.Connection]:
    """A superuser connection to the test's database; its roles are dropped afterwards."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        before = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
        yield conn
        # end the test's sessions first: a role with a session cannot be dropped
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        for (role,) in conn.execute("SELECT rolname FROM pg_roles").fetchall():
            if role not in before:
                conn.execute(f'DROP OWNED BY "{role}"')
                conn.execute(f'DROP ROLE "{role}"')


def socket_path(url: str) -> str:
    host = parse_qs(urlsplit(url).query)["host"][0]
    return str(Path(host) / ".s.PGSQL.5432")


@dataclass
class TcpFront:
    """127.0.0.1:port -> the server's unix socket, byte for byte; `cut()` hangs up."""

    target: str
    port: int = 0
    _server: socket.socket | None = None
    _conns: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        server = socket.create_server(("127.0.0.1", 0))
        self.port = server.getsockname()[1]
        self._server = server
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    frozen: threading.Event = field(default_factory=threading.Event)

    def freeze(self) -> None:
        """Stop moving bytes, keeping every connection open: a peer that vanished
        without a reset (the sender's data stays unacknowledged)."""
        self.frozen.set()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self.frozen.is_set():
                    self.frozen.wait()
                    threading.Event().wait()  # never forward again
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Reset every open connection (RST, as a dropped NAT entry or a rebooted peer)."""
        with self._lock:
            for s in self._conns:
                try:
                    if s.family == socket.AF_INET:  # linger 0: close() sends RST
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.close()
                except OSError:
                    pass
            self._conns.clear()

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()


@pytest.fixture
def tcp_front(pg_url: str) -> Iterator[TcpFront]:
    front = TcpFront(socket_path(pg_url))
    front.start()
    try:
        yield front
    finally:
        front.stop()


def tcp_url(front: TcpFront, pg_url: str, host: str = "127.0.0.1", user: str = "postgres") -> str:
    dbname = urlsplit(pg_url).path.lstrip("/")
    return f"postgresql://{user}:{SECRET}@{host}:{front.port}/{dbname}"
