"""A cached release file damaged after its verification (a flipped byte, size and mtime
restored) never loads as good: load-pg checks the gzip CRC and length it reads anyway,
fails the file naming it and `taxi-cli extract ... --force`, and loads nothing of it."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from taxi_cli.catalog import GREEN
from taxi_cli.cli import app
from taxi_cli.errors import DataError
from taxi_cli.postgres.loader import load_file
from tests.pg_helpers import GREEN_10, count, sha256

pytestmark = pytest.mark.integration
G10 = "green_tripdata_2020-10.csv"
FETCH_AGAIN = "taxi-cli extract green 2020-10 --force"


def _flip(path: Path, at: int) -> None:
    """Flip one bit at byte `at` (negative: from the end), keeping size and mtime."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[at] ^= 0x04
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size


@pytest.mark.parametrize(
    ("at", "bad_rows"),
    [
        (-6, "reject"),  # the CRC-32 trailer: every row reads fine, the check does not
        (-3, "quarantine"),  # ISIZE
        (900_000, "reject"),  # inside the deflate data
        (900_000, "quarantine"),
        (1_500, "quarantine"),  # early: garbage rows first, then the check
    ],
)
def test_a_damaged_file_loads_nothing_and_says_fetch_it_again(
    pg_conn: psycopg.Connection, tmp_path: Path, at: int, bad_rows: str
) -> None:
    path = tmp_path / GREEN_10.name
    shutil.copyfile(GREEN_10, path)
    load_file(pg_conn, GREEN, path, G10, "before")  # the good file's rows are there
    _flip(path, at)
    with pytest.raises(DataError) as caught:
        load_file(pg_conn, GREEN, path, G10, "after", bad_rows=bad_rows, force=True)
    message = str(caught.value)
    assert message.startswith(f"{GREEN_10.name}: the file is damaged")
    assert FETCH_AGAIN in message and "\n" not in message
    # the previous load stands, untouched; nothing of the damaged file is in the table
    assert count(pg_conn, "green_tripdata") == 95_120
    assert pg_conn.execute("SELECT sha256 FROM taxi_cli_loads").fetchall() == [("before",)]
    assert count(pg_conn, "taxi_cli_rejects") == 0


def test_the_intact_file_still_loads(pg_conn: psycopg.Connection, tmp_path: Path) -> None:
    # the control: the same file, not damaged, passes the same checks
    assert gzip.decompress(GREEN_10.read_bytes())
    result = load_file(pg_conn, GREEN, GREEN_10, G10, sha256(GREEN_10), bad_rows="quarantine")
    assert (result.rows, result.rejected) == (95_120, 0)


def test_cli_fails_the_month_of_a_cache_damaged_after_verification(  # type: ignore[no-untyped-def]
    mirror, pg_url: str
) -> None:
    mirror.add_file(GREEN_10)
    runner = CliRunner()
    first = runner.invoke(app, ["extract", "green", "2020-10"])
    assert first.exit_code == 0, first.stderr
    cached = next(Path(os.environ["TAXI_DATA_DIR"]).rglob(GREEN_10.name))
    _flip(cached, 700_000)
    result = runner.invoke(app, ["load-pg", "green", "2020-10", "--pg-url", pg_url])
    assert result.exit_code in (1, 4)  # a data error (4: "some partitions failed")
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "damaged" in errors[0] and FETCH_AGAIN in errors[0], result.stderr
    with psycopg.connect(pg_url) as conn:
        assert count(conn, "green_tripdata") == 0
