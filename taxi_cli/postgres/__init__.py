"""Load the release files into PostgreSQL (`load-pg`), and the embedded server (`db`).

The API the CLI and `backfill` use. Modules: `target` (which server, connecting),
`embedded` (the default server), `ddl` (tables), `rows` (CSV -> COPY batches with row
ids), `md5vec` (vectorised md5), `loader` (the transaction), `ledger`, `zones`.
"""

from __future__ import annotations

from typing import Any

import psycopg

from taxi_cli.catalog import TaxiType
from taxi_cli.config import Settings
from taxi_cli.console import Output
from taxi_cli.extract import Extracted
from taxi_cli.postgres import ddl
from taxi_cli.postgres import errors as pg_errors
from taxi_cli.postgres import ledger as _ledger
from taxi_cli.postgres.ledger import LedgerRow
from taxi_cli.postgres.loader import LoadResult, bootstrap, load_file
from taxi_cli.postgres.target import describe_target
from taxi_cli.postgres.zones import load_zones_file

__all__ = [
    "LedgerRow",
    "LoadResult",
    "connect",
    "describe_target",
    "ledger_rows",
    "load_file",
    "load_month",
    "load_zones",
    "record_failure",
]


def connect(cfg: Settings) -> psycopg.Connection[Any]:
    """A connection to the resolved target (autocommit); ConnectError (exit 3) if not."""
    from taxi_cli.postgres import target

    return target.connect(cfg, autocommit=True)


def load_month(
    cfg: Settings,
    taxi: TaxiType,
    month: str,
    extracted: Extracted,
    *,
    mode: str = "replace",
    bad_rows: str = "reject",
    force: bool = False,
    out: Output | None = None,
) -> LoadResult:
    """Load one extracted month as the rows of its file in `{schema}.{taxi}_tripdata`."""
    return load_file(
        cfg,
        taxi,
        extracted.path,
        extracted.csv_name,
        extracted.sha256,
        month=month,
        mode=mode,
        bad_rows=bad_rows,
        force=force,
        out=out,
    )


def load_zones(cfg: Settings, extracted: Extracted, *, force: bool = False) -> LoadResult:
    """Load the zone lookup into `{schema}.taxi_zone_lookup`."""
    return load_zones_file(cfg, extracted.path, extracted.sha256, force=force)


def ledger_rows(cfg: Settings) -> list[LedgerRow]:
    """Every row of `{schema}.taxi_cli_loads`; [] when the table does not exist."""
    schema = ddl.check_schema(cfg.pg_schema)
    with pg_errors.mapped("reading the load ledger", describe_target(cfg)), connect(cfg) as conn:
        if not _ledger.exists(conn, schema):
            return []
        return _ledger.read_present(conn, schema)


def record_failure(cfg: Settings, taxi: TaxiType, month: str, file: str, error: str) -> None:
    """Mark `file` failed with `error`, in its own transaction (the load rolled back)."""
    schema = ddl.check_schema(cfg.pg_schema)
    doing = f"recording the failure of {file}"
    with pg_errors.mapped(doing, describe_target(cfg)), connect(cfg) as conn:
        bootstrap(conn, schema, None)
        with conn.transaction():
            _ledger.write_failure(
                conn, schema, file=file, taxi=taxi.name, month=month, error=error[:2000]
            )
