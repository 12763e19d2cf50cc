"""Values inside a valid file: what load-pg writes is what PostgreSQL makes of the same
text (the course's flow: text COPY into the typed table, then md5 of the text casts),
or the row is refused as a bad row. Every expectation is computed by the real server."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from taxi_cli.catalog import YELLOW
from taxi_cli.errors import DataError
from taxi_cli.postgres.loader import load_file
from taxi_cli.postgres.rows import TripStream
from tests.pg_helpers import count, decode_copy_rows

pytestmark = pytest.mark.integration
NAME = "yellow_tripdata_2020-07.csv"
COLUMNS = [c.sql_name for c in YELLOW.columns]
FORMULA = (
    "md5(concat(vendorid, tpep_pickup_datetime, tpep_dropoff_datetime, pulocationid, "
    "dolocationid, fare_amount, trip_distance))"
)
OK = "1,2020-07-01 00:25:32,2020-07-01 00:33:39,1,1.50,1,{tag},238,75,2,8,0.5,0.5,0,0,0.3,9.3,0"

# (column position in the yellow CSV, raw field text): each becomes one row
EDGES: list[tuple[int, str]] = [
    *[
        (10, v)  # fare_amount (hashed)
        for v in [
            "1e309",
            "-1e309",
            "1e-400",
            "2.4e-324",
            "0e-400",
            "5e-324",
            "1e23",
            "-1e23",
            "-0",
            "-0.00",
            "0x10",
            "0x1.8p3",
            "inf",
            "-Infinity",
            "NaN",
            " 1.5 ",
            "+1.5",
            "1_0",
            "1e15",
            "999999999999999.9",
            "123456789012345678",
            "9007199254740993",
            "1.7976931348623157e308",
            "1.7976931348623159e308",
            "0.30000000000000004",
            "1e-05",
            '"2.5"',
            '""',
            "1.5.0",
        ]
    ],
    *[(4, v) for v in ["1e23", "4.9e-324", "-0", "1E+2"]],  # trip_distance (hashed)
    *[
        (1, v)  # tpep_pickup_datetime (hashed)
        for v in [
            "2016-12-31 23:59:60",
            "2020-07-01 12:30:60",
            "2020-07-01 23:59:60.5",
            "2020-07-01 24:00:00",
            "2020-07-01 24:00:01",
            "0000-01-01 00:00:00",
            "0001-01-01 00:00:00",
            "0999-03-04 05:06:07",
            "2020-07-01 12:00",
            "2020-07-01T12:00:01",
            " 2020-07-01 12:00:01 ",
            "2020-07-01 12:00:01.123456",
            "2020-07-01 12:00:01.500",
            "2020-02-30 00:00:00",
            "2020-02-29 00:00:00",
            "2019-02-29 00:00:00",
        ]
    ],
    *[(3, v) for v in ["0x1F", "1_000", " 7 ", "+3", "007", "1.0", "2147483648", "-0"]],
    (0, '"1\n2"'),  # VendorID (hashed): a quoted line break is part of the value
    (0, '"1\r\n2"'),
    (7, '"1,5"'),  # PULocationID (hashed): a quoted comma
    (0, '"a""b"'),
]
# PostgreSQL accepts these; load-pg reads a stated subset of timestamp spellings and
# refuses the rest as bad rows rather than guess (see taxi_cli/postgres/pgtext.py)
SUBSET_ONLY: list[tuple[int, str]] = [
    (1, "9999-12-31 23:59:60"),
    (1, "2020-07-01 12:00:01+05"),
    (1, "20200701 120001"),
    (1, "2020-7-1 1:02:03"),
    (1, "2020-07-01 12:00:01.1234567"),
]


def _row(tag: str, pos: int, value: str) -> str:
    fields = OK.format(tag=tag).split(",")
    fields[pos] = value
    return ",".join(fields)


def _file(tmp_path: Path, rows: list[str]) -> Path:
    import gzip

    body = ",".join(YELLOW.header) + "\r\n" + "".join(r + "\r\n" for r in rows)
    path = tmp_path / f"{NAME}.gz"
    path.write_bytes(gzip.compress(body.encode(), mtime=0))
    return path


def _course_load(conn: psycopg.Connection, rows: list[str]) -> set[str]:
    """The course's flow, row by row (a bad row aborts a COPY): text COPY into the typed
    table, then the md5 UPDATE. Returns the tags PostgreSQL refused."""
    typed = ", ".join(f"{c.sql_name} {c.pg_type}" for c in YELLOW.columns)
    conn.execute(f"CREATE TABLE course (unique_row_id text, {typed})")
    refused = set()
    cols = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    for row in rows:
        tag = row.split(",")[6] if '"' not in row else None
        try:
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy(sql.SQL("COPY course ({}) FROM STDIN (FORMAT csv)").format(cols)) as cp,
            ):
                cp.write(row + "\r\n")
        except psycopg.errors.DataError:
            refused.add(tag or _tag_of(row))
    conn.execute(f"UPDATE course SET unique_row_id = {FORMULA}")
    return refused


def _tag_of(row: str) -> str:
    return next(f for f in row.replace("\n", ",").split(",") if f.startswith("L"))


def test_loaded_values_and_row_ids_are_postgresqls_own(
    pg_conn: psycopg.Connection, tmp_path: Path
) -> None:
    rows = [_row(f"L{i}", pos, v) for i, (pos, v) in enumerate(EDGES + SUBSET_ONLY)]
    subset_tags = {f"L{i}" for i in range(len(EDGES), len(EDGES) + len(SUBSET_ONLY))}
    refused = _course_load(pg_conn, rows)
    # the edge list really has both kinds
    assert {"L0", "L1", "L2", "L3"} <= refused and len(refused) < len(EDGES) // 2

    result = load_file(pg_conn, YELLOW, _file(tmp_path, rows), NAME, "v", bad_rows="quarantine")
    rejects: dict[int, str] = dict(
        pg_conn.execute("SELECT line, reason FROM taxi_cli_rejects WHERE file = %s", (NAME,))
    )
    rejected_tags = {_tag_of(rows[line - 2 - _extra_lines(rows, line)]) for line in rejects}
    assert rejected_tags == refused | subset_tags
    assert result.rows == len(rows) - len(rejected_tags)

    # every loaded row: each typed value as PostgreSQL parsed the text, and its row id
    shown = sql.SQL(", ").join(
        sql.SQL("{}::text").format(sql.Identifier(c)) for c in ["unique_row_id", *COLUMNS]
    )
    ours = pg_conn.execute(
        sql.SQL("SELECT {} FROM yellow_tripdata ORDER BY store_and_fwd_flag").format(shown)
    ).fetchall()
    theirs = pg_conn.execute(
        sql.SQL(
            "SELECT {} FROM course WHERE NOT (store_and_fwd_flag = ANY(%s)) "
            "ORDER BY store_and_fwd_flag"
        ).format(shown),
        (sorted(subset_tags),),
    ).fetchall()
    assert ours == theirs
    assert ("1e+23" not in str(ours)) and "9.999999999999999e+22" in str(ours)


def _extra_lines(rows: list[str], line: int) -> int:
    """Line breaks inside quoted fields of the rows before file line `line`."""
    extra, physical = 0, 2
    for row in rows:
        breaks = row.count("\n")
        if physical + breaks >= line:
            return extra
        physical += 1 + breaks
        extra += breaks
    return extra


def test_out_of_range_numbers_are_bad_rows_naming_line_and_value(
    pg_conn: psycopg.Connection, tmp_path: Path
) -> None:
    rows = [_row("L0", 10, "8"), _row("L1", 10, "1e309")]
    with pytest.raises(DataError, match=r'line 3, column fare_amount "1e309": number out of range'):
        load_file(pg_conn, YELLOW, _file(tmp_path, rows), NAME, "r")
    assert count(pg_conn, "yellow_tripdata") == 0


def test_invalid_utf8_and_nul_rows_are_quarantined_and_the_rest_loads(
    pg_conn: psycopg.Connection, tmp_path: Path
) -> None:
    import gzip

    good = [_row(f"L{i}", 0, "1").encode() for i in range(6)]
    body = [b",".join(h.encode() for h in YELLOW.header), *good]
    body[2] = body[2].replace(b"238", b"2\xff8")  # line 3: invalid UTF-8
    body[4] = body[4].replace(b"238", b"2\x008")  # line 5: a NUL byte
    body[6] = body[6].replace(b"238", "Zürich".encode())  # line 7: fine (UTF-8)
    path = tmp_path / f"{NAME}.gz"
    path.write_bytes(gzip.compress(b"".join(b + b"\r\n" for b in body), mtime=0))

    with pytest.raises(DataError, match=r"line 3: invalid UTF-8"):
        load_file(pg_conn, YELLOW, path, NAME, "u")
    assert count(pg_conn, "yellow_tripdata") == 0

    result = load_file(pg_conn, YELLOW, path, NAME, "u", bad_rows="quarantine")
    assert (result.rows, result.rejected) == (4, 2)
    rejects = pg_conn.execute(
        "SELECT line, reason, raw FROM taxi_cli_rejects ORDER BY line"
    ).fetchall()
    assert [(line, reason.split(" (")[0]) for line, reason, _ in rejects] == [
        (3, "invalid UTF-8"),
        (5, "a NUL byte"),
    ]
    assert "2\\08" in rejects[1][2]  # the raw line is kept, readable
    assert count(pg_conn, "yellow_tripdata", "pulocationid = 'Zürich'") == 1
    assert count(pg_conn, "yellow_tripdata", f"unique_row_id IS DISTINCT FROM {FORMULA}") == 0


def test_a_quoted_line_break_across_a_block_boundary_is_one_record(tmp_path: Path) -> None:
    rows = [_row(f"L{i}", 0, '"1\n2\n3"' if i % 7 == 3 else "1") for i in range(200)]
    rows[151] = _row("L151", 10, "oops")  # a bad value after the multi-line records
    stream = TripStream(_file(tmp_path, rows), YELLOW, quarantine=True, block_bytes=300)
    data = b"".join(stream.batches())
    body = data[len(b"PGCOPY\n\xff\r\n\x00") + 8 : -2]
    decoded = decode_copy_rows(body)
    assert len(decoded) == stream.rows == 199
    assert sum(r[1] == b"1\n2\n3" for r in decoded) == len([i for i in range(200) if i % 7 == 3])
    # the file line of the bad row counts the line breaks inside the quoted fields
    line = 2 + 151 + 2 * len([i for i in range(151) if i % 7 == 3])
    assert [(r.line, r.reason) for r in stream.rejects] == [
        (line, 'column fare_amount: invalid number "oops"')
    ]


def test_an_unclosed_quote_is_an_error_not_the_rest_of_the_file(
    pg_conn: psycopg.Connection, tmp_path: Path
) -> None:
    rows = [_row("L0", 0, "1"), _row("L1", 0, '"1'), *[_row(f"L{i}", 0, "1") for i in range(2, 9)]]
    with pytest.raises(DataError, match=r"line 3: a quoted field is not closed"):
        load_file(pg_conn, YELLOW, _file(tmp_path, rows), NAME, "q", bad_rows="quarantine")
    assert count(pg_conn, "yellow_tripdata") == 0


def test_a_line_longer_than_any_record_is_an_error_in_bounded_memory(
    pg_conn: psycopg.Connection, tmp_path: Path
) -> None:
    rows = [_row("L0", 0, "1"), _row("L1", 6, "x" * (3 << 20)), _row("L2", 0, "1")]
    with pytest.raises(DataError, match=r"line 3: a record longer than 1,048,576 bytes"):
        load_file(pg_conn, YELLOW, _file(tmp_path, rows), NAME, "l", bad_rows="quarantine")
    assert count(pg_conn, "yellow_tripdata") == 0
