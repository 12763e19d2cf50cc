"""The shared fixtures themselves work: a fresh database per test."""

from __future__ import annotations

import psycopg
import pytest


@pytest.mark.integration
def test_pg_url_is_a_fresh_database(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute(
            "select count(*) from information_schema.tables where table_schema = 'public'"
        ).fetchone()
        version = conn.execute("show server_version_num").fetchone()
    assert tables == (0,)
    assert version is not None and int(version[0]) >= 150000  # MERGE needs 15+
