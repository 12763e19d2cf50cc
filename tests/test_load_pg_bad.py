"""Bad inputs: corrupt rows (reject / quarantine), wrong header, unreachable server,
wrong password, hostile schema name. Each: exit code + one clear stderr line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from taxi_cli.catalog import GREEN
from taxi_cli.cli import app
from taxi_cli.errors import DataError
from taxi_cli.postgres.loader import load_file
from tests.fixtures_mirror import Mirror
from tests.fixtures_pg import socket_dir
from tests.pg_helpers import GREEN_04, count, lines_of, write_gz

pytestmark = pytest.mark.integration
G04 = "green_tripdata_2020-04.csv"
runner = CliRunner()


def _serve_green_04(mirror: Mirror, tmp_path: Path, lines: list[str]) -> None:
    path = write_gz(tmp_path / "green_tripdata_2020-04.csv.gz", lines)
    mirror.add_file(path)


def _one_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("taxi-cli: error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def _with_bad_value(line_no: int, column: int, value: str) -> list[str]:
    lines = lines_of(GREEN_04)
    fields = lines[line_no - 1].split(",")
    fields[column] = value
    lines[line_no - 1] = ",".join(fields)
    return lines


def test_a_corrupt_row_rejects_the_file_naming_line_column_value(
    mirror: Mirror, pg_url: str, tmp_path: Path
) -> None:
    # passenger_count (position 8) is checked by the server's COPY: line mapped back
    _serve_green_04(mirror, tmp_path, _with_bad_value(5000, 7, "abc"))
    result = runner.invoke(app, ["load-pg", "green", "2020-04", "--pg-url", pg_url])
    assert result.exit_code == 1
    message = _one_line(result.stderr)
    assert G04 in message and "line 5000" in message
    assert "passenger_count" in message and '"abc"' in message
    with psycopg.connect(pg_url) as conn:
        assert count(conn, "green_tripdata") == 0  # nothing of it landed
        ledger = conn.execute("SELECT count(*) FROM taxi_cli_loads WHERE status = 'done'")
        assert ledger.fetchone() == (0,)


def test_a_bad_hashed_value_is_caught_before_the_server(
    mirror: Mirror, pg_url: str, tmp_path: Path
) -> None:
    _serve_green_04(mirror, tmp_path, _with_bad_value(77, 9, "12,5x"[3:] + "9"))  # fare "5x9"
    result = runner.invoke(app, ["load-pg", "green", "2020-04", "--pg-url", pg_url])
    assert result.exit_code == 1
    message = _one_line(result.stderr)
    assert "line 77" in message and "fare_amount" in message and '"5x9"' in message


def test_a_short_row_is_named_by_line(pg_conn: psycopg.Connection, tmp_path: Path) -> None:
    # extract already refuses short records; the loader checks again for local files
    lines = lines_of(GREEN_04)
    lines[9] = "2,2020-04-01 00:00:00,oops"
    path = write_gz(tmp_path / "short.csv.gz", lines)
    with pytest.raises(DataError, match="line 10: expected 20 fields, found 3"):
        load_file(pg_conn, GREEN, path, G04, "s")
    quarantined = load_file(pg_conn, GREEN, path, G04, "s", bad_rows="quarantine")
    assert (quarantined.rows, quarantined.rejected) == (35_611, 1)


def test_quarantine_loads_the_rest_and_records_the_rejects(
    mirror: Mirror, pg_url: str, tmp_path: Path
) -> None:
    lines = _with_bad_value(5000, 7, "abc")
    fields = lines[19].split(",")
    fields[16] = "9.3.1"  # total_amount
    lines[19] = ",".join(fields)
    _serve_green_04(mirror, tmp_path, lines)
    result = runner.invoke(
        app, ["load-pg", "green", "2020-04", "--pg-url", pg_url, "--bad-rows", "quarantine"]
    )
    assert result.exit_code == 0, result.stderr
    assert "2 rejected rows" in result.stdout
    with psycopg.connect(pg_url) as conn:
        assert count(conn, "green_tripdata") == 35_612 - 2
        rejects = conn.execute("SELECT file, line, reason FROM taxi_cli_rejects ORDER BY line")
        assert rejects.fetchall() == [
            (G04, 20, 'column total_amount: invalid number "9.3.1"'),
            (G04, 5000, 'column passenger_count: invalid integer "abc"'),
        ]


def test_a_wrong_header_is_refused(mirror: Mirror, pg_url: str, tmp_path: Path) -> None:
    yellow = (Path(__file__).parent / "data" / "real" / "yellow_tripdata_2021-01.csv").read_text()
    path = write_gz(tmp_path / "yellow.csv.gz", yellow.splitlines()[:100])
    with psycopg.connect(pg_url, autocommit=True) as conn:
        with pytest.raises(DataError, match="line 1: the header does not match the green layout"):
            load_file(conn, GREEN, path, G04, "h")
        assert conn.execute("SELECT count(*) FROM green_tripdata").fetchone() == (0,)
    # through the CLI, extract's verification refuses the file first, also naming line 1
    _serve_green_04(mirror, tmp_path, yellow.splitlines()[:100])
    result = runner.invoke(app, ["load-pg", "green", "2020-04", "--pg-url", pg_url])
    assert result.exit_code == 1
    message = _one_line(result.stderr)
    assert "line 1" in message and "header" in message


def test_an_unreachable_server_exits_3_naming_the_host_password_masked() -> None:
    url = "postgresql://loader:s3cr3t-pw@127.0.0.1:1/ny_taxi"
    result = runner.invoke(app, ["load-pg", "green", "2020-04", "--pg-url", url])
    assert result.exit_code == 3
    message = _one_line(result.stderr)
    assert "127.0.0.1" in message and "loader:***@" in message
    assert "s3cr3t-pw" not in result.stderr + result.stdout


@pytest.fixture
def password_role(pg_server_url: str) -> Iterator[str]:
    """A role that must log in with a SCRAM password over the socket (pg_hba entry)."""
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        row = conn.execute("SHOW hba_file").fetchone()
        assert row is not None  # SHOW always returns its one row
        hba = Path(str(row[0]))
        conn.execute("DROP ROLE IF EXISTS pw_role")
        conn.execute("CREATE ROLE pw_role LOGIN PASSWORD 'right-pw'")
        original = hba.read_text()
        hba.write_text("local all pw_role scram-sha-256\n" + original)
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield "pw_role"
    finally:
        hba.write_text(original)
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
            conn.execute("DROP ROLE IF EXISTS pw_role")


def test_a_wrong_password_exits_3_masked(pg_server_url: str, password_role: str) -> None:
    host = socket_dir(pg_server_url)
    right = f"postgresql://{password_role}:right-pw@/postgres?host={host}"
    with psycopg.connect(right) as conn:  # the role and the pg_hba entry really work
        assert conn.execute("SELECT current_user").fetchone() == (password_role,)
    wrong = f"postgresql://{password_role}:wrong-pw@/postgres?host={host}"
    result = runner.invoke(app, ["load-pg", "green", "2020-04", "--pg-url", wrong])
    assert result.exit_code == 3
    message = _one_line(result.stderr)
    assert "password authentication failed" in message and "pw_role:***@" in message
    assert "wrong-pw" not in result.stderr + result.stdout


def test_a_hostile_schema_name_is_refused_not_executed(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE y (id int)")
    hostile = 'x"; drop table y; --'
    result = runner.invoke(
        app, ["load-pg", "green", "2020-04", "--pg-url", pg_url, "--schema", hostile]
    )
    assert result.exit_code == 2
    assert "invalid schema name" in _one_line(result.stderr)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('public.y') IS NOT NULL").fetchone() == (True,)
