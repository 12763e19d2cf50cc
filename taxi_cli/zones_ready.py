"""The zone lookup in the warehouse before dbt needs it: loaded when it is missing.

`transform` builds `dim_zones` from `taxi_zone_lookup`; a new project (the scheduled
workflow's first run, a fresh embedded server) has trips but no zones. `ensure` looks
the table up and, when it is missing, loads it through the loaders' own path
(`taxi_cli.load.load_zones` with `destinations.make`): the same download, verification,
atomic load and messages as `load-pg zones` / `load-bq zones`. A table that exists is
left alone (reloading it is `load-* zones --force`).
"""

from __future__ import annotations

import io
import logging

from taxi_cli.config import Settings

log = logging.getLogger("taxi_cli.transform")


def _pg_has_zones(cfg: Settings) -> bool:
    from taxi_cli.postgres import ddl
    from taxi_cli.postgres.destination import connect

    with connect(cfg) as conn:
        found = conn.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
            (cfg.pg_schema, ddl.ZONES),
        ).fetchone()
    return found is not None


def _bq_has_zones(cfg: Settings) -> bool:
    from google.api_core import exceptions as gexc

    from taxi_cli.gcp import bq_schema, clients

    auth = clients.bq_auth(cfg)
    table = f"{auth.project}.{cfg.bq_dataset}.{bq_schema.ZONES_TABLE}"
    try:
        client = clients.bq_client(auth, cfg.bq_location)
        client.get_table(table, retry=clients.preflight_retry(cfg))
    except gexc.NotFound:
        return False
    except Exception as exc:
        raise clients.api_error(exc, f"table {table}", auth) from exc
    return True


def ensure(cfg: Settings, target: str) -> int | None:
    """Load the zone lookup into `target` ("pg" or "bq") if it is missing; the rows
    loaded, or None when it was there."""
    from rich.console import Console

    from taxi_cli import destinations, load
    from taxi_cli.choices import TargetName
    from taxi_cli.console import Output

    present = _pg_has_zones(cfg) if target == "pg" else _bq_has_zones(cfg)
    if present:
        return None
    log.info("the zone lookup is missing on %s: loading it (load-%s zones)", target, target)
    # the load's own summary table is not transform's result: it is dropped, and one
    # log line says what was loaded
    quiet = Output(quiet=True, stdout=io.StringIO(), out=Console(file=io.StringIO()))
    made = destinations.make(cfg, TargetName(target), out=quiet)
    summary = load.load_zones(cfg, made, quiet, force=False)
    log.info("zone lookup loaded: %s rows", f"{summary.rows:,}")
    return summary.rows
