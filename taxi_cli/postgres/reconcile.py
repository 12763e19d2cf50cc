"""What a pg load records to reconcile a file: counts, upstream version, data checks.

`finish` runs inside the load's transaction, after the rows are in place: the data
checks of `taxi_cli.quality`, counted while the rows were made on the values as sent
(`rows.CheckSpec`: no scan of the file's rows after the COPY), go into the ledger row
written in the same transaction. With `fail` limits a breach raises, so the whole load
rolls back and the previous rows of the file (if any) stay. `actual_rows` counts what
the tables hold now, per file, for `taxi-cli check`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from taxi_cli.catalog import TAXIS, ZONES_ROWS
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
    csv_name: str,
    *,
    written: int,
    quarantined: int,
    source: Source | None,
    checks: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The ledger's reconciliation columns for this load; raises DataError on a breach
    of `fail` limits (inside the transaction: nothing of the load commits). `checks`: the
    data check counts, made while the rows were (`rows.CheckSpec`), over `written` rows."""
    recorded: dict[str, Any] = {"written": written, "quarantined": quarantined}
    if source is None:
        return recorded
    outcome = Outcome(written, checks or {}, source.limits.shares)
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
