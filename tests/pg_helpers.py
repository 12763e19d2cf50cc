"""Helpers shared by the load-pg tests (not fixtures): small gzip files, counts, the CLI."""

from __future__ import annotations

import gzip
import hashlib
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tests.conftest import SHARED_DATA

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


def wait_for_copy(conn: psycopg.Connection[Any], proc: subprocess.Popen[Any]) -> int:
    """Poll pg_stat_progress_copy until a COPY into this database has rows in flight;
    the rows so far. Fails if `proc` ends first (the fault would come too late)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the process ended before its COPY was seen"
        row = conn.execute(
            "SELECT max(tuples_processed) FROM pg_stat_progress_copy "
            "WHERE datname = current_database()"
        ).fetchone()
        if row and row[0]:
            return int(row[0])
        time.sleep(0.02)
    raise AssertionError("no COPY in progress seen")


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
