"""unique_row_id: client-side rendering + vectorised md5 == PostgreSQL's md5 over the
typed columns, on edge values, the course's test vector, and the two real green months."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import psycopg
import pytest

from taxi_cli.catalog import YELLOW
from taxi_cli.postgres import md5vec
from taxi_cli.postgres.loader import load_file
from taxi_cli.rowid import hash_plan, row_id
from tests.pg_helpers import GREEN_04, GREEN_10, md5_mismatches, write_gz

VECTOR_ROW = "1,2020-07-01 00:25:32,2020-07-01 00:33:39,1,1.50,1,N,238,75,2,8,0.5,0.5,0,0,0.3,9.3,0"
VECTOR = "cee1d10a1152e7104de39a64d59d98c0"


def _yellow(vendor: str, pickup: str, dropoff: str, dist: str, pu: str, fare: str) -> str:
    return f"{vendor},{pickup},{dropoff},1,{dist},1,N,{pu},75,2,{fare},0.5,0.5,0,0,0.3,9.3,0"


EDGE_ROWS = [
    VECTOR_ROW,
    _yellow("2", "2020-07-01 00:25:32.500", "2020-07-01T00:33:39", ".00", "1", ".00"),
    _yellow("", "2020-07-01 00:00:00", "", "1e-05", "", "0.00001"),
    _yellow("1", "2020-07-01 00:00:01", "2020-07-01 00:00:02", "1000000000000000", "1", "1e15"),
    _yellow("1", "2020-07-01 00:00:01", "2020-07-01 00:00:02", "-5.5", "1", "-0"),
    _yellow("1", "2020-07-01 00:00:01", "2020-07-01 00:00:02", "123456789012345678", "1", "0.1"),
    _yellow("1", "2020-07-01 00:00:01", "2020-07-01 00:00:02", "0.30000000000000004", "1", "-60.3"),
    _yellow(
        "1", "2020-07-01 00:00:01", "2020-07-01 00:00:02", "5e-324", "1", "1.7976931348623157e308"
    ),
    _yellow("1", "2020-07-01 00:00:01", "2020-07-01 00:00:02", "0.0001", "1", "999999999999999.9"),
    _yellow("1", "2020-07-01 00:00:01", "2020-07-01 00:00:02", "NaN", "1", "Infinity"),
    _yellow("1", "2020-07-01 00:00:01", "2020-07-01 00:00:02", "2", "x" * 70, "3"),  # 2 blocks
    _yellow("1", "2020-07-01 00:00:01", "2020-07-01 00:00:02", "2", "y" * 150, "3"),  # > 2
    _yellow("1", "2020-07-01 00:00:01", "2020-07-01 00:00:02", "2", "Zürich-Ω", "3"),  # UTF-8
    _yellow("", "", "", "", "", ""),
]


def test_vectorised_md5_equals_hashlib() -> None:
    rng = random.Random(3)
    messages = [bytes(rng.randrange(32, 127) for _ in range(n)) for n in range(0, 200)]
    for width, low, high in ((64, 0, 55), (128, 56, 119)):
        group = [m for m in messages if low <= len(m) <= high]
        padded = b"".join(m.ljust(width, b"\0") for m in group)
        lens = np.array([len(m) for m in group], dtype=np.int64)
        hexed = md5vec.hex_digests(md5vec.md5_padded(padded, lens, width))
        assert [bytes(h).decode() for h in hexed] == [hashlib.md5(m).hexdigest() for m in group]


def test_the_c_md5_of_joined_messages_equals_hashlib() -> None:
    rng = random.Random(5)
    messages = [bytes(rng.randrange(32, 127) for _ in range(n)) for n in range(0, 300)]
    messages += ["Zürich-Ω".encode(), b"", b"x" * 55, b"x" * 56, b"y" * 5000]
    rng.shuffle(messages)  # lane groups of 4 mix short and long messages
    lens = np.array([len(m) for m in messages], dtype=np.int64)
    hexed = md5vec.hex_of_joined(b"".join(messages), lens)
    assert hexed is not None  # make install builds the extension: the tests need it
    assert [h.decode() for h in hexed] == [hashlib.md5(m).hexdigest() for m in messages]
    with pytest.raises(ValueError, match="add up"):
        md5vec.hex_of_joined(b"abc", np.array([1, 1], dtype=np.int64))


def test_the_course_vector() -> None:
    header = ",".join(YELLOW.header)
    assert row_id(VECTOR_ROW.split(","), hash_plan(YELLOW, header.split(","))) == VECTOR


@pytest.mark.integration
def test_edge_values_hash_as_postgresql_renders_them(
    pg_conn: psycopg.Connection, tmp_path: Path
) -> None:
    path = write_gz(tmp_path / "edge.csv.gz", [",".join(YELLOW.header), *EDGE_ROWS])
    result = load_file(pg_conn, YELLOW, path, "yellow_tripdata_2020-07.csv", "e")
    assert result.rows == len(EDGE_ROWS)
    mismatches = md5_mismatches(
        pg_conn, "yellow_tripdata", "tpep_pickup_datetime", "tpep_dropoff_datetime"
    )
    assert mismatches == 0
    vector = pg_conn.execute(
        "SELECT unique_row_id FROM yellow_tripdata WHERE tpep_pickup_datetime = "
        "'2020-07-01 00:25:32' AND fare_amount = 8"
    ).fetchall()
    assert vector == [(VECTOR,)]


@pytest.mark.integration
def test_every_row_of_both_real_green_months(pg_conn: psycopg.Connection) -> None:
    from taxi_cli.catalog import GREEN

    for path in (GREEN_04, GREEN_10):
        load_file(pg_conn, GREEN, path, path.name.removesuffix(".gz"), path.name)
    mismatches = md5_mismatches(
        pg_conn, "green_tripdata", "lpep_pickup_datetime", "lpep_dropoff_datetime"
    )
    assert mismatches == 0
    total = pg_conn.execute("SELECT count(*) FROM green_tripdata").fetchone()
    assert total == (35_612 + 95_120,)
