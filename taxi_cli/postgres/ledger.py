"""The load ledger `{schema}.taxi_cli_loads`: one row per source file, written in the
same transaction as the file's rows, so it never claims data that did not commit."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from taxi_cli.catalog import TAXIS
from taxi_cli.model import LedgerRow
from taxi_cli.postgres import ddl

_COLUMNS = "file, taxi, month, sha256, rows, mode, started, finished, status, error, worker"
_RECONCILE = [name for name, _ in ddl.RECONCILE_COLUMNS]


def exists(conn: psycopg.Connection[Any], schema: str) -> bool:
    found = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}"."{ddl.LEDGER}"',)
    ).fetchone()
    return bool(found and found[0])


def read(conn: psycopg.Connection[Any], schema: str, file: str | None = None) -> list[LedgerRow]:
    query = sql.SQL("SELECT " + _COLUMNS + ", " + ", ".join(_RECONCILE) + " FROM {}").format(
        ddl.ident(schema, ddl.LEDGER)
    )
    if file is None:
        rows = conn.execute(query + sql.SQL(" ORDER BY file")).fetchall()
    else:
        rows = conn.execute(query + sql.SQL(" WHERE file = %s"), (file,)).fetchall()
    return [_row(row) for row in rows]


def _row(row: tuple[Any, ...]) -> LedgerRow:
    file, taxi, month, sha256, rows, mode, started, finished, status, error, worker = row[:11]
    detail: dict[str, Any] = {"worker": worker} if worker else {}
    detail.update(reconcile_detail(dict(zip(_RECONCILE, row[11:], strict=True))))
    return LedgerRow(
        file, taxi, month, sha256, rows, status, error, started, finished, detail, "pg", mode
    )


def has_rows(conn: psycopg.Connection[Any], schema: str, name: str) -> bool:
    """Whether schema.name holds a row (stops at the first: cheap on any table)."""
    found = conn.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(ddl.ident(schema, name))
    ).fetchone()
    return bool(found and found[0])


def read_present(conn: psycopg.Connection[Any], schema: str) -> list[LedgerRow]:
    """The ledger rows whose data still exists: a row whose table (or, in the tool's
    partitioned table, whose partition) was dropped since counts as missing, so that
    every planner loads it again (the course's "start over" drops the tables)."""
    kinds = dict(
        conn.execute(
            "SELECT c.relname, c.relkind FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
            (schema,),
        ).fetchall()
    )

    def present(row: LedgerRow) -> bool:
        if row.taxi == "zones":
            return ddl.ZONES in kinds and has_rows(conn, schema, ddl.ZONES)
        taxi = TAXIS.get(row.taxi)
        if taxi is None:
            return True  # not ours to judge
        kind = kinds.get(ddl.table(taxi))
        if kind is None:
            return False
        # a truncated partition (or a truncated course table) is missing too; a file's
        # rows deleted from a course table are not looked for (no index: a full scan)
        name = ddl.partition_name(taxi, row.file) if kind == "p" else ddl.table(taxi)
        if name not in kinds:
            return False
        return not row.rows or has_rows(conn, schema, name)

    return [row for row in read(conn, schema) if row.status != "done" or present(row)]


def write(
    conn: psycopg.Connection[Any],
    schema: str,
    *,
    file: str,
    taxi: str,
    month: str | None,
    sha256: str | None,
    rows: int | None,
    mode: str | None,
    started: datetime,
    status: str,
    error: str | None = None,
    worker: str | None = None,
    reconciled: Mapping[str, Any] | None = None,
) -> None:
    """`reconciled`: the RECONCILE_COLUMNS values of this load (absent ones are NULL)."""
    values = [(reconciled or {}).get(name) for name in _RECONCILE]
    values = [Jsonb(v) if isinstance(v, dict) else v for v in values]
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (" + _COLUMNS + ", " + ", ".join(_RECONCILE) + ") VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, clock_timestamp(), %s, %s, %s"
            + ", %s"
            * len(_RECONCILE)
            + ") "
            "ON CONFLICT (file) DO UPDATE SET taxi = excluded.taxi, month = excluded.month, "
            "sha256 = excluded.sha256, rows = excluded.rows, mode = excluded.mode, "
            "started = excluded.started, finished = excluded.finished, "
            "status = excluded.status, error = excluded.error, worker = excluded.worker"
            + "".join(f", {name} = excluded.{name}" for name in _RECONCILE)
        ).format(ddl.ident(schema, ddl.LEDGER)),
        (file, taxi, month, sha256, rows, mode, started, status, error, worker, *values),
    )


def reconcile_detail(columns: Mapping[str, Any]) -> dict[str, Any]:
    """The reconciliation columns as `LedgerRow.detail` keys (the same for every target):
    source_rows, written, quarantined, source_bytes, upstream {size, etag, last_modified},
    checks."""
    detail: dict[str, Any] = {
        k: columns[k]
        for k in ("source_rows", "written", "quarantined", "source_bytes")
        if columns.get(k) is not None
    }
    if columns.get("upstream_size") is not None:
        detail["upstream"] = {
            "size": columns["upstream_size"],
            "etag": columns.get("upstream_etag"),
            "last_modified": columns.get("upstream_modified"),
        }
    if columns.get("checks") is not None:
        detail["checks"] = columns["checks"]
    return detail


def write_failure(
    conn: psycopg.Connection[Any],
    schema: str,
    *,
    file: str,
    taxi: str,
    month: str | None,
    error: str,
) -> None:
    """Mark the file's last attempt failed, keeping what the last good load recorded."""
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (file, taxi, month, started, finished, status, error) "
            "VALUES (%s, %s, %s, clock_timestamp(), clock_timestamp(), 'failed', %s) "
            "ON CONFLICT (file) DO UPDATE SET finished = excluded.finished, "
            "status = 'failed', error = excluded.error"
        ).format(ddl.ident(schema, ddl.LEDGER)),
        (file, taxi, month, error),
    )
