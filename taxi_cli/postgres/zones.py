"""`load-pg zones`: the zone lookup into `{schema}.taxi_zone_lookup`, atomically.

TRUNCATE + COPY in one transaction (rather than a table swap) so that views built on
the table, such as dbt's, keep working; the ledger skips an unchanged file.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from taxi_cli.catalog import ZONES_COLUMNS, ZONES_FILE
from taxi_cli.config import Settings
from taxi_cli.errors import DataError
from taxi_cli.postgres import ddl, ledger
from taxi_cli.postgres import errors as pg_errors
from taxi_cli.postgres.csvfile import check_header, open_text_lines
from taxi_cli.postgres.loader import LoadResult, _where, bootstrap, connection, table_kind

_HINT = "re-extract it with `taxi-cli extract zones --force`"


def load_zones_file(
    conn_or_cfg: psycopg.Connection[Any] | Settings,
    path: Path,
    sha256: str,
    *,
    schema: str | None = None,
    force: bool = False,
) -> LoadResult:
    if schema is None:
        schema = conn_or_cfg.pg_schema if isinstance(conn_or_cfg, Settings) else "public"
    ddl.check_schema(schema)
    begin = time.perf_counter()
    started = datetime.now(UTC)
    with open_text_lines(path) as src:
        data = src.read()
    first = data.split(b"\n", 1)[0]
    check_header(path.name, first, (tuple(c.name for c in ZONES_COLUMNS),), "zone lookup")
    table = ddl.ident(schema, ddl.ZONES)
    mapped = pg_errors.mapped(f"loading {path.name}", _where(conn_or_cfg))
    with mapped, connection(conn_or_cfg) as conn:
        bootstrap(conn, schema, None)
        try:
            with conn.transaction():
                conn.execute(
                    "SELECT pg_advisory_xact_lock(%s)", (ddl.lock_key(schema, ZONES_FILE),)
                )
                # a table dropped since its load (the course's "start over") is loaded again
                present = table_kind(conn, schema, ddl.ZONES) is not None
                present = present and ledger.has_rows(conn, schema, ddl.ZONES)  # or truncated
                conn.execute(ddl.create_zones(schema))
                rows = ledger.read(conn, schema, ZONES_FILE)
                done = bool(rows) and rows[0].status == "done" and rows[0].sha256 == sha256
                if not force and present and done:
                    return LoadResult(
                        "zones",
                        None,
                        ZONES_FILE,
                        0,
                        "replace",
                        True,
                        time.perf_counter() - begin,
                        sha256,
                        0,
                        rows[0].rows,
                    )
                conn.execute(sql.SQL("TRUNCATE {}").format(table))
                columns = sql.SQL(", ").join(sql.Identifier(c.sql_name) for c in ZONES_COLUMNS)
                with conn.cursor() as cur:
                    with cur.copy(
                        sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, HEADER true)").format(
                            table, columns
                        )
                    ) as copy:
                        copy.write(data)
                    count = int(cur.rowcount)
                ledger.write(
                    conn,
                    schema,
                    file=ZONES_FILE,
                    taxi="zones",
                    month=None,
                    sha256=sha256,
                    rows=count,
                    mode="replace",
                    started=started,
                    status="done",
                )
        except psycopg.errors.DataError as exc:
            context = exc.diag.context or ""
            raise DataError(
                f"{path.name}: {exc.diag.message_primary} ({context.strip()}); {_HINT}"
            ) from exc
        except psycopg.Error as exc:
            raise pg_errors.translate(exc, f"loading {path.name}", _where(conn_or_cfg)) from exc
    return LoadResult(
        "zones",
        None,
        ZONES_FILE,
        count,
        "replace",
        False,
        time.perf_counter() - begin,
        sha256,
        0,
        count,
    )
