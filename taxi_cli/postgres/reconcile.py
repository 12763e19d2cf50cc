"""What a pg load records to reconcile a file: counts, upstream version, data checks.

`finish` runs inside the load's transaction, after the rows are in place: one aggregate
over the file's rows (`WHERE filename = ...`, which prunes to the file's partition)
counts what `taxi_cli.quality` checks, and the result goes into the ledger row written
in the same transaction. With `fail` limits a breach raises, so the whole load rolls
back and the previous rows of the file (if any) stay. `actual_rows` counts what the
tables hold now, per file, for `taxi-cli check`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from taxi_cli.catalog import TAXIS, ZONES_ROWS, TaxiType, next_month
from taxi_cli.errors import DataError
from taxi_cli.model import Upstream
from taxi_cli.postgres import ddl
from taxi_cli.quality import Limits, Outcome, breach_message


@dataclass(frozen=True)
class Source:
    """What the source said about the file, handed down by the destination."""

    rows: int  # counted while verifying (header excluded)
    uncompressed_bytes: int
    upstream: Upstream
    limits: Limits


def _check_sql(taxi: TaxiType, known: sql.Composable) -> list[tuple[str, Any]]:
    have = set(ddl.data_columns(taxi))
    p, d = sql.Identifier(taxi.pickup.lower()), sql.Identifier(taxi.dropoff.lower())
    checks: list[tuple[str, Any]] = [
        ("outside_month", sql.SQL("{p} < %(start)s OR {p} >= %(end)s").format(p=p)),
        ("dropoff_before_pickup", sql.SQL("{d} < {p}").format(p=p, d=d)),
    ]
    if {"fare_amount", "total_amount"} <= have:
        checks.append(("negative_amounts", sql.SQL("fare_amount < 0 OR total_amount < 0")))
    if "passenger_count" in have:
        checks.append(("null_passenger_count", sql.SQL("passenger_count IS NULL")))
    pu = next((c for c in have if c.lower() == "pulocationid"), None)
    do = next((c for c in have if c.lower() == "dolocationid"), None)
    if pu and do:
        # a constant array: PostgreSQL hashes `<> ALL` over it (~2.5x a regex and a cast
        # per id, the most expensive check of the scan); NULL ids are not unknown
        test = sql.SQL("{c} <> ALL ({k}::text[])")
        parts = [test.format(c=sql.Identifier(c), k=known) for c in (pu, do)]
        checks.append(("unknown_zones", sql.SQL(" OR ").join(parts)))
    return checks


def data_checks(
    conn: psycopg.Connection[Any], schema: str, taxi: TaxiType, csv_name: str, month: str | None
) -> dict[str, int]:
    """The check counts over the rows of `csv_name` (one scan of its partition)."""
    checks = _check_sql(taxi, sql.Literal(known_zone_ids(conn, schema)))
    if month is None:  # no month to be outside of
        checks = [c for c in checks if c[0] != "outside_month"]
    if not checks:
        return {}
    columns = sql.SQL(", ").join(
        sql.SQL("count(*) FILTER (WHERE {})").format(cond) for _, cond in checks
    )
    query = sql.SQL("SELECT {} FROM {} WHERE filename = %(file)s").format(
        columns, ddl.ident(schema, ddl.table(taxi))
    )
    params = {"file": csv_name}
    if month is not None:
        params |= {"start": f"{month}-01", "end": f"{next_month(month)}-01"}
    row = conn.execute(query, params).fetchone()
    return {name: int(value) for (name, _), value in zip(checks, row or (), strict=True)}


def known_zone_ids(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    """The zone ids a trip may name, as text: the lookup's when it is loaded, else the
    release's 1..265. An id is known when it is exactly one of them (`007` is not)."""
    found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}"."{ddl.ZONES}"',))
    if bool((found.fetchone() or (False,))[0]):
        query = sql.SQL("SELECT locationid::text FROM {} WHERE locationid IS NOT NULL").format(
            ddl.ident(schema, ddl.ZONES)
        )
        ids = sorted({str(row[0]) for row in conn.execute(query).fetchall()})
        if ids:
            return ids
    return [str(i) for i in range(1, ZONES_ROWS + 1)]


def finish(
    conn: psycopg.Connection[Any],
    schema: str,
    taxi: TaxiType,
    csv_name: str,
    month: str | None,
    *,
    rows: int,
    written: int,
    quarantined: int,
    source: Source | None,
) -> dict[str, Any]:
    """The ledger's reconciliation columns for this load; raises DataError on a breach
    of `fail` limits (inside the transaction: nothing of the load commits)."""
    recorded: dict[str, Any] = {"written": written, "quarantined": quarantined}
    if source is None:
        return recorded
    outcome = Outcome(rows, data_checks(conn, schema, taxi, csv_name, month), source.limits.shares)
    if outcome.breaches and source.limits.fail:
        raise DataError(breach_message(csv_name, outcome))
    recorded |= {
        "source_rows": source.rows,
        "source_bytes": source.uncompressed_bytes,
        "upstream_size": source.upstream.size,
        "upstream_etag": source.upstream.etag,
        "upstream_modified": source.upstream.last_modified,
        "checks": outcome.as_json(),
    }
    return recorded


def actual_rows(conn: psycopg.Connection[Any], schema: str) -> dict[str, int]:
    """filename -> rows, counted now in every trip table of the schema."""
    counts: dict[str, int] = {}
    for taxi in TAXIS.values():
        exists = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}"."{ddl.table(taxi)}"',)
        ).fetchone()
        if not (exists and exists[0]):
            continue
        query = sql.SQL("SELECT filename, count(*) FROM {} GROUP BY filename").format(
            ddl.ident(schema, ddl.table(taxi))
        )
        for name, found in conn.execute(query).fetchall():
            if name is not None:
                counts[str(name)] = int(found)
    return counts
