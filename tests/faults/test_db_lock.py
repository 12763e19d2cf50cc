"""The run lock identifies the target itself, not its spelling: `localhost` and
`127.0.0.1`, extra URL parameters, the unix socket or another user name for the same
database are one target; another database or schema is another."""

from __future__ import annotations

from urllib.parse import urlsplit

import psycopg
import pytest

from taxi_cli.choices import TargetName
from taxi_cli.config import load_settings
from taxi_cli.destinations import lock_name, make
from taxi_cli.lock import RunLock, lock_path
from tests.faults import db_support
from tests.faults.db_support import SECRET, TcpFront, cli, make_role, role_url, tcp_url
from tests.fixtures_mirror import Mirror

pytestmark = [pytest.mark.integration]
# the suite's fixtures (a module, not a conftest: other fault files share the folder)
admin = db_support.admin
tcp_front = db_support.tcp_front


def _lock_of(url: str, schema: str = "public") -> str:
    cfg = load_settings({"pg_url": url, "pg_schema": schema})
    return lock_name(make(cfg, TargetName.PG)[0])


def test_one_database_spelled_many_ways_is_one_target(  # type: ignore[no-untyped-def]
    pg_url: str, admin, tcp_front: TcpFront
) -> None:
    role = make_role(admin)
    spellings = [
        pg_url,  # the unix socket
        tcp_url(tcp_front, pg_url, "127.0.0.1"),
        tcp_url(tcp_front, pg_url, "localhost"),
        tcp_url(tcp_front, pg_url, "127.0.0.1") + "?application_name=cron&connect_timeout=7",
        tcp_url(tcp_front, pg_url, "localhost", user=role),
    ]
    names = {_lock_of(url) for url in spellings}
    assert len(names) == 1, names
    assert _lock_of(pg_url, schema="other") not in names

    dbname = urlsplit(pg_url).path.lstrip("/")
    other = f"{dbname}_b"
    admin.execute(f'CREATE DATABASE "{other}"')
    try:
        assert _lock_of(pg_url.replace(f"/{dbname}?", f"/{other}?")) not in names
    finally:
        admin.execute(f'DROP DATABASE "{other}" WITH (FORCE)')


def test_a_backfill_under_another_spelling_is_refused(
    mirror: Mirror, pg_url: str, pg_conn: psycopg.Connection, tcp_front: TcpFront
) -> None:
    mirror.add_month("green", "2020-01", rows=100)
    cfg = load_settings({"pg_url": pg_url})
    target = make(cfg, TargetName.PG)[0]
    with RunLock(lock_path(cfg, lock_name(target)), what="backfill (test)"):
        url = tcp_url(tcp_front, pg_url, "localhost") + "?application_name=other"
        run = cli("backfill", "green", "2020-01", "--pg-url", url)
    assert run.code == 1
    line = run.error_line
    assert "another backfill into PostgreSQL cluster" in line and "is running" in line
    assert SECRET not in run.err
    assert pg_conn.execute("SELECT to_regclass('green_tripdata')").fetchone() == (None,)
    # released: the same command now runs
    assert cli("backfill", "green", "2020-01", "--pg-url", url, "-q").code == 0


def test_without_pg_control_system_the_lock_still_names_the_server(  # type: ignore[no-untyped-def]
    pg_url: str, admin, tcp_front: TcpFront
) -> None:
    from taxi_cli.postgres.target import server_identity

    admin.execute("REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC")
    a, b = make_role(admin), make_role(admin)
    first = tcp_url(tcp_front, pg_url, "127.0.0.1", user=a)
    second = tcp_url(tcp_front, pg_url, "localhost", user=b) + "?application_name=x"
    assert _lock_of(first) == _lock_of(second) == _lock_of(role_url(pg_url, a))
    identity = server_identity(load_settings({"pg_url": first}))
    assert identity.startswith("PostgreSQL started ") and "cluster" not in identity
