"""Helpers shared by the load-pg tests (not fixtures): small gzip files, counts, the CLI."""

from __future__ import annotations

import gzip
import hashlib
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from taxi_cli.catalog import TaxiType, next_month
from taxi_cli.postgres import ddl
from taxi_cli.postgres.reconcile import known_zone_ids
from tests.conftest import SHARED_DATA

T = TypeVar("T")
REAL = SHARED_DATA / "real"
GREEN_04 = REAL / "green_tripdata_2020-04.csv.gz"
GREEN_10 = REAL / "green_tripdata_2020-10.csv.gz"
CLI = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "taxi-cli")

# the course's formula, evaluated by PostgreSQL over the typed columns
SQL_MD5 = "md5(concat(vendorid, {p}, {d}, pulocationid, dolocationid, fare_amount, trip_distance))"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_gz(path: Path, lines: list[str], *, crlf: bool = True) -> Path:
    end = "\r\n" if crlf else "\n"
    path.write_bytes(gzip.compress("".join(line + end for line in lines).encode(), mtime=0))
    return path


def lines_of(path: Path) -> list[str]:
    return gzip.decompress(path.read_bytes()).decode().splitlines()


def count(conn: psycopg.Connection, table: str, where: str = "true") -> int:
    query = sql.SQL("SELECT count(*) FROM {} WHERE " + where).format(
        sql.Identifier(*table.split("."))
    )
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def md5_mismatches(conn: psycopg.Connection, table: str, pickup: str, dropoff: str) -> int:
    """Rows whose loaded unique_row_id differs from PostgreSQL's own md5 formula."""
    formula = SQL_MD5.format(p=pickup, d=dropoff)
    return count(conn, table, f"unique_row_id IS DISTINCT FROM {formula}")


def while_running(
    proc: subprocess.Popen[Any], probe: Callable[[], T | None], what: str, every: float = 0.02
) -> T:
    """Poll `probe` until it finds something (not None or falsy) while `proc` runs: what
    it found. Fails if `proc` ends first (a fault injected then would come too late)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the process ended before {what} was seen"
        found = probe()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"no {what} seen")


def wait_for_copy(conn: psycopg.Connection[Any], proc: subprocess.Popen[Any]) -> int:
    """Poll pg_stat_progress_copy until a COPY into this database has rows in flight;
    the rows so far."""

    def rows_in_flight() -> int | None:
        row = conn.execute(
            "SELECT max(tuples_processed) FROM pg_stat_progress_copy "
            "WHERE datname = current_database()"
        ).fetchone()
        return int(row[0]) if row and row[0] else None

    return while_running(proc, rows_in_flight, "a COPY in progress")


def wait_backends_gone(conn: psycopg.Connection[Any]) -> None:
    """Until no other session is left in this database (a killed client's backend ends)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        others = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
        if others == (0,):
            return
        time.sleep(0.05)
    raise AssertionError("a backend of the stopped client is still there")


CopyRow = tuple[bytes | None, ...]


def decode_copy_rows(data: bytes) -> list[CopyRow]:
    """Binary COPY tuples (no signature or trailer) as tuples of raw field bytes."""
    out: list[CopyRow] = []
    pos = 0
    while pos < len(data):
        (n,) = struct.unpack_from(">h", data, pos)
        pos += 2
        fields: list[bytes | None] = []
        for _ in range(n):
            (size,) = struct.unpack_from(">i", data, pos)
            pos += 4
            fields.append(None if size < 0 else data[pos : pos + size])
            pos += max(size, 0)
        out.append(tuple(fields))
    return out


def sql_data_checks(
    conn: psycopg.Connection[Any], schema: str, taxi: TaxiType, csv_name: str, month: str | None
) -> dict[str, int]:
    """The data checks of a loaded file counted by PostgreSQL over its rows in the table:
    the oracle for the counts the loader makes while streaming (`rows.CheckSpec`)."""
    have = set(ddl.data_columns(taxi))
    p, d = sql.Identifier(taxi.pickup.lower()), sql.Identifier(taxi.dropoff.lower())
    known = sql.Literal(known_zone_ids(conn, schema))
    checks: list[tuple[str, sql.Composable]] = []
    if month is not None:
        checks.append(("outside_month", sql.SQL("{p} < %(start)s OR {p} >= %(end)s").format(p=p)))
    checks.append(("dropoff_before_pickup", sql.SQL("{d} < {p}").format(p=p, d=d)))
    if {"fare_amount", "total_amount"} <= have:
        checks.append(("negative_amounts", sql.SQL("fare_amount < 0 OR total_amount < 0")))
    if "passenger_count" in have:
        checks.append(("null_passenger_count", sql.SQL("passenger_count IS NULL")))
    zone = sql.SQL("({c} IS NOT NULL AND NOT ({c} = ANY ({k}::text[])))")
    checks.append(
        (
            "unknown_zones",
            sql.SQL(" OR ").join(
                zone.format(c=sql.Identifier(c), k=known) for c in ("pulocationid", "dolocationid")
            ),
        )
    )
    columns = sql.SQL(", ").join(
        sql.SQL("count(*) FILTER (WHERE {})").format(cond) for _, cond in checks
    )
    query = sql.SQL("SELECT {} FROM {} WHERE filename = %(file)s").format(
        columns, ddl.ident(schema, ddl.table(taxi))
    )
    params: dict[str, str] = {"file": csv_name}
    if month is not None:
        params |= {"start": f"{month}-01", "end": f"{next_month(month)}-01"}
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return {name: int(value) for (name, _), value in zip(checks, row, strict=True)}
