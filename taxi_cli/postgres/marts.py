"""Read dbt's marts where `taxi-cli transform` built them (for the report)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from taxi_cli.postgres import ddl


def _exists(conn: psycopg.Connection[Any], schema: str, name: str) -> bool:
    found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}"."{name}"',))
    row = found.fetchone()
    return bool(row and row[0])


def revenue(
    conn: psycopg.Connection[Any], schema: str, top: int = 10
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]] | None:
    """(revenue by pickup borough, the `top` pickup zones by revenue), None without the mart."""
    if not (
        _exists(conn, schema, "fact_trips") and _exists(conn, schema, "dm_monthly_zone_revenue")
    ):
        return None
    boroughs = conn.execute(
        sql.SQL(
            "SELECT pickup_borough, sum(total_amount)::float8 FROM {} "
            "GROUP BY 1 ORDER BY 2 DESC NULLS LAST"
        ).format(ddl.ident(schema, "fact_trips"))
    ).fetchall()
    zones = conn.execute(
        sql.SQL(
            "SELECT revenue_zone, sum(revenue_monthly_total_amount)::float8 FROM {} "
            "GROUP BY 1 ORDER BY 2 DESC NULLS LAST LIMIT %s"
        ).format(ddl.ident(schema, "dm_monthly_zone_revenue")),
        (top,),
    ).fetchall()
    return (
        [(str(name), float(value or 0)) for name, value in boroughs],
        [(str(name), float(value or 0)) for name, value in zones],
    )
