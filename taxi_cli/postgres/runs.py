"""`{schema}.taxi_cli_runs`: the run history of loads into this schema (`taxi_cli.runs`)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from taxi_cli.postgres import ddl
from taxi_cli.runs import RunRecord

RUNS = "taxi_cli_runs"
_COLUMNS = (
    "started, finished, command, label, worker, done, skipped, failed, rows, seconds, status, "
    "downloaded_bytes"
)


def create(schema: str) -> sql.Composed:
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, started timestamptz NOT NULL, "
        "finished timestamptz NOT NULL, command text NOT NULL, label text NOT NULL, "
        "worker text, done integer NOT NULL, skipped integer NOT NULL, failed integer NOT NULL, "
        "rows bigint NOT NULL, seconds double precision NOT NULL, status text NOT NULL, "
        "downloaded_bytes bigint NOT NULL DEFAULT 0)"
    ).format(ddl.ident(schema, RUNS))


def write(conn: psycopg.Connection[Any], schema: str, run: RunRecord) -> None:
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(create(schema))
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (" + _COLUMNS + ") VALUES (" + ", ".join(["%s"] * 12) + ")"
            ).format(ddl.ident(schema, RUNS)),
            (
                run.started,
                run.finished,
                run.command,
                run.label,
                run.worker,
                run.done,
                run.skipped,
                run.failed,
                run.rows,
                run.seconds,
                run.status,
                run.downloaded_bytes,
            ),
        )


def read(conn: psycopg.Connection[Any], schema: str, limit: int = 100) -> list[RunRecord]:
    """The latest `limit` runs, newest first; [] when none was recorded."""
    found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}"."{RUNS}"',)).fetchone()
    if not (found and found[0]):
        return []
    rows = conn.execute(
        sql.SQL("SELECT " + _COLUMNS + " FROM {} ORDER BY started DESC, id DESC LIMIT %s").format(
            ddl.ident(schema, RUNS)
        ),
        (limit,),
    ).fetchall()
    return [_record(row) for row in rows]


def _record(row: tuple[Any, ...]) -> RunRecord:
    started, finished, command, label, worker, done, skipped, failed, count, seconds, status = row[
        :11
    ]
    return RunRecord(
        started,
        finished,
        command,
        label,
        worker or "",
        int(done),
        int(skipped),
        int(failed),
        int(count),
        float(seconds),
        status,
        int(row[11] or 0),
    )
