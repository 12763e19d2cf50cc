"""Server-side failures are named for what they are, in one line, and only transient
ones are retried: missing privileges, a read-only role, a statement timeout, a full
disk on the server, a lost connection. Real roles, real locks, a real tmpfs."""

from __future__ import annotations

import os
import pwd
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from taxi_cli.errors import TransientError
from taxi_cli.postgres import ddl
from taxi_cli.postgres.errors import PrivilegeError, ServerError, translate
from tests.faults import db_support
from tests.faults.db_support import (
    SECRET,
    TcpFront,
    cli,
    finish,
    make_role,
    role_url,
    start,
    tcp_url,
)
from tests.fixtures_mirror import Mirror
from tests.pg_helpers import count, wait_for_copy, while_running

pytestmark = [pytest.mark.integration]
# the suite's fixtures (a module, not a conftest: other fault files share the folder)
admin = db_support.admin
tcp_front = db_support.tcp_front
G01 = "green_tripdata_2020-01.csv"


def _load(url: str, month: str = "2020-01", *extra: str) -> subprocess.CompletedProcess[str]:
    run = cli("load-pg", "green", month, "--pg-url", url, "-q", *extra)
    return subprocess.CompletedProcess([], run.code, run.out, run.err)


def _failed(run: object, code: int = 1) -> str:
    """The single error line of a failed CLI run; no secret, no traceback."""
    from tests.faults.db_support import Run

    assert isinstance(run, Run)
    assert run.code == code, run.err
    assert SECRET not in run.err + run.out
    return run.error_line


def _ids(conn: psycopg.Connection) -> object:
    return conn.execute(
        "SELECT count(*), md5(string_agg(unique_row_id, ',' ORDER BY unique_row_id)) "
        "FROM green_tripdata"
    ).fetchone()


def test_no_create_privilege_on_the_schema(mirror: Mirror, pg_url: str, admin) -> None:  # type: ignore[no-untyped-def]
    mirror.add_month("green", "2020-01", rows=200)
    role = make_role(admin)  # PostgreSQL >= 15: PUBLIC has USAGE but not CREATE on public
    line = _failed(cli("load-pg", "green", "2020-01", "--pg-url", role_url(pg_url, role)))
    assert "permission denied for schema public" in line
    assert "GRANT CREATE" in line
    assert admin.execute("SELECT to_regclass('public.green_tripdata')").fetchone() == (None,)


def test_no_create_privilege_on_the_database(mirror: Mirror, pg_url: str, admin) -> None:  # type: ignore[no-untyped-def]
    mirror.add_month("green", "2020-01", rows=200)
    role = make_role(admin)
    url = role_url(pg_url, role)
    line = _failed(cli("load-pg", "green", "2020-01", "--pg-url", url, "--schema", "trips"))
    assert "permission denied for database" in line and "GRANT CREATE ON DATABASE" in line
    assert admin.execute("SELECT to_regnamespace('trips')").fetchone() == (None,)


def test_a_read_only_role_is_named_as_such(mirror: Mirror, pg_url: str, admin) -> None:  # type: ignore[no-untyped-def]
    mirror.add_month("green", "2020-01", rows=200)
    assert cli("load-pg", "green", "2020-01", "--pg-url", pg_url, "-q").code == 0
    before = _ids(admin)
    role = make_role(
        admin,
        "GRANT CREATE, USAGE ON SCHEMA public TO {role}",
        "GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}",
        "ALTER ROLE {role} SET default_transaction_read_only = on",
    )
    url = role_url(pg_url, role)
    line = _failed(cli("load-pg", "green", "2020-01", "--pg-url", url, "--force"))
    assert "read-only" in line and "default_transaction_read_only" in line
    assert _ids(admin) == before
    # ... and `status` works for it: reading is all it needs
    shown = cli("status", "--pg-url", url)
    assert shown.code == 0, shown.err
    assert "2020-01" in shown.out and "200" in shown.out
    assert SECRET not in shown.out + shown.err


def test_a_role_without_any_grant(mirror: Mirror, pg_url: str, admin) -> None:  # type: ignore[no-untyped-def]
    mirror.add_month("green", "2020-01", rows=200)
    assert cli("load-pg", "green", "2020-01", "--pg-url", pg_url, "-q").code == 0
    before = _ids(admin)
    role = make_role(admin, "GRANT CREATE ON SCHEMA public TO {role}")
    url = role_url(pg_url, role)
    line = _failed(cli("status", "--pg-url", url))
    assert "reading the load ledger" in line and "permission denied for table" in line
    assert "GRANT SELECT" in line
    # load-pg plans from the ledger first, like backfill: that read is what fails
    line = _failed(cli("load-pg", "green", "2020-01", "--pg-url", url, "--force"))
    assert "permission denied for table taxi_cli_loads" in line and "GRANT SELECT" in line
    line = _failed(cli("backfill", "green", "2020-01", "--pg-url", url, "--dry-run"))
    assert "permission denied for table taxi_cli_loads" in line
    assert _ids(admin) == before


def test_a_statement_timeout_is_not_retried(mirror: Mirror, pg_url: str, admin) -> None:  # type: ignore[no-untyped-def]
    mirror.add_month("green", "2020-01", rows=200)
    assert cli("load-pg", "green", "2020-01", "--pg-url", pg_url, "-q").code == 0
    before = _ids(admin)
    role = make_role(admin, options="SUPERUSER")
    admin.execute(f'ALTER ROLE "{role}" SET statement_timeout = 200')
    # another session holds the ledger: the load waits until its statement_timeout
    with psycopg.connect(pg_url) as holder:
        holder.execute("LOCK TABLE taxi_cli_loads IN ACCESS EXCLUSIVE MODE")
        url = role_url(pg_url, role)
        line = _failed(cli("load-pg", "green", "2020-01", "--pg-url", url, "--force"))
        assert "statement_timeout" in line and "ALTER ROLE" in line
        run = cli("backfill", "green", "2020-01", "--pg-url", url, "--reprocess", "all", "-q")
        holder.rollback()
    # backfill reads the ledger first: it fails there, once, in one line
    assert "statement_timeout" in _failed(run)
    assert "retrying" not in run.err  # failing the same way again is not worth a retry
    assert _ids(admin) == before


@pytest.fixture
def small_tablespace(admin) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A 2 MiB tmpfs as a tablespace: whatever goes there finds the disk full."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the CI container runs as root)")
    # outside pytest's 0700 tmp root, which the server's own user cannot enter
    where = Path(tempfile.mkdtemp(prefix="taxi-cli-tiny-disk-"))
    owner = pwd.getpwnam("embedded_postgres")  # the user the embedded server runs as
    subprocess.run(
        [
            "mount",
            "-t",
            "tmpfs",
            "-o",
            f"size=2m,uid={owner.pw_uid},gid={owner.pw_gid},mode=0700",
            "tmpfs",
            str(where),
        ],
        check=True,
    )
    name = f"tiny_{where.name.rsplit('-', 1)[1].lower()}"
    try:
        admin.execute(f"CREATE TABLESPACE {name} LOCATION '{where}'")
        try:
            yield name
        finally:
            admin.execute(f"DROP TABLESPACE IF EXISTS {name}")
    finally:
        subprocess.run(["umount", str(where)], check=True)
        where.rmdir()


def test_a_full_disk_on_the_server(
    mirror: Mirror, pg_url: str, admin: psycopg.Connection, small_tablespace: str
) -> None:
    mirror.add_month("green", "2020-01", rows=200)
    assert cli("load-pg", "green", "2020-01", "--pg-url", pg_url, "-q").code == 0
    before = _ids(admin)
    mirror.add_month("green", "2020-01", rows=60_000, seed=5)  # the month grew upstream
    url = f"{pg_url}&options=-c%20default_tablespace%3D{small_tablespace}&password={SECRET}"
    fresh = {"TAXI_DATA_DIR": str(Path(tempfile.mkdtemp(prefix="taxi-cli-dl-")))}
    line = _failed(cli("load-pg", "green", "2020-01", "--pg-url", url, "-q", "--force", env=fresh))
    assert "disk is full" in line and "No space left on device" in line
    assert _ids(admin) == before


def test_a_lost_connection_fails_load_pg_and_keeps_the_rows(  # type: ignore[no-untyped-def]
    mirror: Mirror, pg_url: str, admin, tcp_front: TcpFront, tmp_path: Path
) -> None:
    mirror.add_month("green", "2020-01", rows=200)
    url = tcp_url(tcp_front, pg_url)
    assert cli("load-pg", "green", "2020-01", "--pg-url", url, "-q").code == 0
    before = _ids(admin)
    mirror.add_month("green", "2020-01", rows=300_000, seed=7)
    fresh = {"TAXI_DATA_DIR": str(tmp_path / "grown")}
    assert cli("extract", "green", "2020-01", "-q", env=fresh).code == 0
    proc = start("load-pg", "green", "2020-01", "--pg-url", url, env=fresh)
    wait_for_copy(admin, proc)
    tcp_front.cut()
    run = finish(proc)
    # a lost connection is transient: the partition is retried on a new one, and the
    # month lands once, whole; what the cut transaction had written never shows
    assert run.code == 0, run.err
    assert "lost the connection" in run.err and "retrying" in run.err
    assert count(admin, "green_tripdata") == 300_000
    assert _ids(admin) != before


def _wait_for_lock_wait(conn: psycopg.Connection, proc: subprocess.Popen[str]) -> int:
    """The pid of the backend of `proc` that waits for an advisory lock."""

    def waiting() -> int | None:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event = 'advisory'"
        ).fetchone()
        return int(row[0]) if row else None

    return while_running(proc, waiting, "a load waiting for the file's lock")


def test_backfill_retries_a_terminated_session(  # type: ignore[no-untyped-def]
    mirror: Mirror, pg_url: str, admin
) -> None:
    mirror.add_month("green", "2020-01", rows=2_000, seed=7)
    # the file's load lock is held elsewhere: the load waits in its transaction
    admin.execute("SELECT pg_advisory_lock(%s)", (ddl.lock_key("public", G01),))
    proc = start("backfill", "green", "2020-01", "--pg-url", pg_url, "-j", "1")
    pid = _wait_for_lock_wait(admin, proc)
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    _wait_for_lock_wait(admin, proc)  # the retry waits again: the first attempt is gone
    admin.execute("SELECT pg_advisory_unlock_all()")
    run = finish(proc, timeout=300)
    assert run.code == 0, run.err
    assert "retrying" in run.err and "pg_terminate_backend" in run.err
    assert count(admin, "green_tripdata") == 2_000
    assert admin.execute(
        "SELECT status, rows FROM taxi_cli_loads WHERE file = %s", (G01,)
    ).fetchone() == ("done", 2_000)


def test_the_map_marks_only_transient_states_retryable(pg_url: str) -> None:
    """Real server errors through the map: a serialization failure is transient, a
    read-only transaction or a missing table is not."""
    with psycopg.connect(pg_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE t (id int PRIMARY KEY, v int)")
        setup.execute("INSERT INTO t VALUES (1, 0)")
    with psycopg.connect(pg_url) as a, psycopg.connect(pg_url) as b:
        for conn in (a, b):
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            conn.execute("SELECT v FROM t").fetchall()
        a.execute("UPDATE t SET v = 1")
        a.commit()
        with pytest.raises(psycopg.errors.SerializationFailure) as caught:
            b.execute("UPDATE t SET v = 2")
        b.rollback()
        mapped = translate(caught.value, "loading x.csv", "db")
        assert isinstance(mapped, TransientError)
        assert "serialization failure" in str(mapped) and "run again" in str(mapped)

        b.execute("SET TRANSACTION READ ONLY")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as ro:
            b.execute("UPDATE t SET v = 3")
        b.rollback()
        assert isinstance(translate(ro.value, "loading x.csv"), PrivilegeError)

        b.execute("SET statement_timeout = 1")
        with pytest.raises(psycopg.errors.QueryCanceled) as timeout:
            b.execute("SELECT pg_sleep(5)")
        b.rollback()
        timed_out = translate(timeout.value, "loading x.csv")
        assert isinstance(timed_out, ServerError) and not isinstance(timed_out, TransientError)
        assert "statement_timeout" in str(timed_out)


def test_load_pg_zones_names_the_failure_too(
    mirror: Mirror, pg_url: str, admin: psycopg.Connection, tmp_path: Path
) -> None:
    mirror.add_zones()
    role = make_role(admin)
    line = _failed(cli("load-pg", "zones", "--pg-url", role_url(pg_url, role)))
    assert "taxi_zone_lookup.csv" in line and "permission denied for schema public" in line


def test_a_server_that_vanishes_without_a_reset(  # type: ignore[no-untyped-def]
    mirror: Mirror, pg_url: str, admin, tcp_front: TcpFront, tmp_path: Path
) -> None:
    """No RST, no FIN: the bytes just stop. The load must not hang in send() for good:
    tcp_user_timeout (2 s here, 5 min by default) turns it into a lost connection."""
    mirror.add_month("green", "2020-01", rows=300_000, seed=7)
    fresh = {"TAXI_DATA_DIR": str(tmp_path / "dl")}
    assert cli("extract", "green", "2020-01", "-q", env=fresh).code == 0
    url = tcp_url(tcp_front, pg_url) + "?tcp_user_timeout=2000"
    proc = start("load-pg", "green", "2020-01", "--pg-url", url, env=fresh)
    wait_for_copy(admin, proc)
    tcp_front.freeze()
    run = finish(proc, timeout=240)
    # the loss is retried like any transient failure; the frozen peer then does not
    # answer at all, which stops the run as "cannot connect" (exit 3) in one line
    line = _failed(run, code=3)
    assert "cannot connect" in line
    assert "lost the connection" in run.err and "retrying" in run.err
    assert count(admin, "green_tripdata") == 0
    assert admin.execute("SELECT count(*) FROM taxi_cli_loads").fetchone() == (0,)


def test_tcp_timeouts_are_on_unless_the_url_sets_them(pg_url: str, tcp_front: TcpFront) -> None:
    from taxi_cli.config import load_settings
    from taxi_cli.postgres.target import TCP_DEFAULTS, connect

    plain = load_settings({"pg_url": tcp_url(tcp_front, pg_url)})
    with connect(plain) as conn:
        params = conn.info.get_parameters()
    assert {k: params.get(k) for k in TCP_DEFAULTS} == TCP_DEFAULTS
    own = load_settings({"pg_url": tcp_url(tcp_front, pg_url) + "?tcp_user_timeout=1234"})
    with connect(own) as conn:
        assert conn.info.get_parameters()["tcp_user_timeout"] == "1234"
