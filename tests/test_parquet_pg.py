"""The Parquet's `unique_row_id` is byte-identical to PostgreSQL's: on every row of the real
green 2020-04 file and on edge values, against the embedded server.

Two checks per file: (1) the multiset of Parquet ids equals the ids PostgreSQL computes
with the course's formula over the rows load-pg loaded from the same csv.gz; (2) row by
row, PostgreSQL hashes each Parquet row's own typed values (copied into a table) to that
row's id, so no id can pair with the wrong row.
"""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import polars as pl
import psycopg
import pytest

from taxi_cli.catalog import GREEN, YELLOW, TaxiType
from taxi_cli.parquet import to_parquet
from taxi_cli.postgres.loader import load_file
from tests.pg_helpers import GREEN_04, SQL_MD5, sha256, write_gz

pytestmark = pytest.mark.integration

_PG_TYPES: dict[pl.DataType, str] = {
    pl.Int64(): "bigint",
    pl.Float64(): "double precision",
    pl.String(): "text",
}


def _formula(taxi: TaxiType) -> str:
    return SQL_MD5.format(p=taxi.pickup.lower(), d=taxi.dropoff.lower())


def _pg_ids(conn: psycopg.Connection, taxi: TaxiType) -> Counter[str]:
    rows = conn.execute(f"SELECT {_formula(taxi)} FROM public.{taxi.name}_tripdata").fetchall()
    return Counter(r[0] for r in rows)


def _row_by_row_mismatches(conn: psycopg.Connection, taxi: TaxiType, df: pl.DataFrame) -> int:
    """Copy the Parquet rows (typed) into a table; count rows PostgreSQL hashes otherwise."""
    cols = [c.sql_name for c in taxi.columns]
    types = [
        "timestamp" if df.schema[c.name] == pl.Datetime("us") else _PG_TYPES[df.schema[c.name]]
        for c in taxi.columns
    ]
    ddl = ", ".join(f"{c} {t}" for c, t in zip(cols, types, strict=True))
    conn.execute(f"CREATE TEMP TABLE pq (unique_row_id text, {ddl})")
    formula = _formula(taxi)  # concat() renders bigint ids as their decimal text
    with conn.cursor().copy(f"COPY pq (unique_row_id, {', '.join(cols)}) FROM STDIN") as copy:
        for row in df.select("unique_row_id", *[c.name for c in taxi.columns]).iter_rows():
            copy.write_row(row)
    found = conn.execute(
        f"SELECT count(*) FROM pq WHERE unique_row_id IS DISTINCT FROM {formula}"
    ).fetchone()
    total = conn.execute("SELECT count(*) FROM pq").fetchone()
    conn.execute("DROP TABLE pq")
    assert total == (df.height,)
    assert found is not None
    return int(found[0])


def test_every_row_of_the_real_green_month(pg_conn: psycopg.Connection, tmp_path: Path) -> None:
    src = tmp_path / GREEN_04.name
    src.write_bytes(GREEN_04.read_bytes())
    df = pl.read_parquet(to_parquet(src, GREEN))
    assert df.height == 35_612
    assert df["filename"].unique().to_list() == ["green_tripdata_2020-04.csv"]

    result = load_file(pg_conn, GREEN, GREEN_04, "green_tripdata_2020-04.csv", sha256(GREEN_04))
    assert result.rows == 35_612
    assert Counter(df["unique_row_id"].to_list()) == _pg_ids(pg_conn, GREEN)
    # and what load-pg stored is the same set, too
    stored = pg_conn.execute("SELECT unique_row_id FROM public.green_tripdata").fetchall()
    assert Counter(r[0] for r in stored) == Counter(df["unique_row_id"].to_list())
    assert _row_by_row_mismatches(pg_conn, GREEN, df) == 0


def _yellow(dist: str, fare: str, times: str = "2020-07-01 00:00:01,2020-07-01 00:00:02") -> str:
    return f"1,{times},1,{dist},1,N,1,75,2,{fare},0,0,0,0,0,0,0"


# Values whose PostgreSQL text differs from the CSV's: each takes the lenient path.
_EDGE = [
    "1,2020-07-01 00:25:32,2020-07-01 00:33:39,1,1.50,1,N,238,75,2,8,0.5,0.5,0,0,0.3,9.3,0",
    "2,2020-07-01 00:25:32.500,2020-07-01T00:33:39,1,.00,1,N,1,75,2,.00,0,0,0,0,0,0,0",
    ",2020-07-01 00:00:00,,1,1e-05,1,N,,75,2,0.00001,0,0,0,0,0,0,0",
    _yellow("1000000000000000", "1e15"),
    _yellow("-5.5", "-0"),
    _yellow("123456789012345678", "0.1"),
    _yellow("0.30000000000000004", "-60.3"),
    _yellow("5e-324", "1.7976931348623157e308"),
    _yellow("0.0001", "999999999999999.9"),
    _yellow("NaN", "Infinity"),
    _yellow("0012.50", "-0.0"),
    ",,,,,,,,,,,,,,,,,",
]


def test_edge_values_hash_as_postgresql_renders_them(
    pg_conn: psycopg.Connection, tmp_path: Path
) -> None:
    path = write_gz(tmp_path / "yellow_tripdata_2020-07.csv.gz", [",".join(YELLOW.header), *_EDGE])
    df = pl.read_parquet(to_parquet(path, YELLOW))
    assert df.height == len(_EDGE)
    load_file(pg_conn, YELLOW, path, "yellow_tripdata_2020-07.csv", sha256(path))
    assert Counter(df["unique_row_id"].to_list()) == _pg_ids(pg_conn, YELLOW)
    assert _row_by_row_mismatches(pg_conn, YELLOW, df) == 0
    assert gzip.decompress(path.read_bytes()).count(b"\n") == len(_EDGE) + 1
