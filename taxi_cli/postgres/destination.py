"""The pg destination: months into `{schema}.{taxi}_tripdata`, the ledger in the database.

Its ledger of record is `{schema}.taxi_cli_loads`, written by the loader in the same
transaction as the file's rows; a failure is recorded in a transaction of its own once
the load has rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from taxi_cli.choices import BadRows, Mode
from taxi_cli.config import Settings
from taxi_cli.model import Extracted, LedgerRow, Loaded, Partition
from taxi_cli.plan import Action
from taxi_cli.postgres import ddl, embedded, reconcile, target
from taxi_cli.postgres import ledger as _ledger
from taxi_cli.postgres import runs as _runs
from taxi_cli.postgres.errors import mapped
from taxi_cli.postgres.loader import LoadResult, bootstrap, load_file
from taxi_cli.quality import Limits
from taxi_cli.runs import RunRecord

if TYPE_CHECKING:
    from taxi_cli.console import Output

log = logging.getLogger("taxi_cli.postgres")


class PgDestination:
    name = "pg"
    modes: tuple[Mode, ...] = (Mode.REPLACE, Mode.MERGE)
    needs_parquet = False
    verifies_in_pass = True  # a first download is verified by the COPY pass (`settle`)

    def __init__(
        self,
        cfg: Settings,
        *,
        mode: Mode = Mode.REPLACE,
        bad_rows: BadRows = BadRows.REJECT,
        out: Output | None = None,
        worker: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.worker = worker
        self._identity: str | None = None
        self.schema = ddl.check_schema(cfg.pg_schema)
        self.mode = mode
        self.bad_rows = bad_rows
        self.out = out

    def identity(self) -> str:
        if self._identity is None:  # the server's own name for it, not the URL's spelling
            self._identity = target.server_identity(self.cfg)
        return self._identity

    def check(self) -> None:
        target.connect(self.cfg).close()
        log.info("loading into %s schema %s", target.describe_target(self.cfg), self.schema)

    def ledger(self, *, read_only: bool = False) -> Sequence[LedgerRow]:
        if read_only and self._embedded_absent():
            return []  # nothing was ever loaded here, and reading must not create a server
        return ledger_rows(self.cfg)

    def _embedded_absent(self) -> bool:
        if self.cfg.pg_url or self.cfg.uses_libpq_env:
            return False
        return embedded.status(self.cfg.pg_data_path).version is None

    def load(
        self, part: Partition, source: Extracted, action: Action, staged: Loaded | None = None
    ) -> Loaded:
        result = load_file(
            self.cfg,
            part.taxi,
            source.path,
            source.csv_name,
            source.sha256,
            month=part.month,
            mode=self.mode,
            bad_rows=self.bad_rows,
            force=action is not Action.LOAD,
            out=self.out,
            worker=self.worker,
            source=reconcile.Source(
                source.rows, source.uncompressed_bytes, source.upstream, Limits.of(self.cfg)
            ),
            settle=source.settle,
        )
        return self._loaded(result)

    def record_run(self, run: RunRecord) -> None:
        """Append to `{schema}.taxi_cli_runs` (its own transaction, after the run)."""
        with connect(self.cfg) as conn:
            _runs.write(conn, self.schema, run)

    def runs(self) -> list[RunRecord]:
        if self._embedded_absent():
            return []  # reading must not create a server
        with connect(self.cfg) as conn:
            return _runs.read(conn, self.schema)

    def revenue(self) -> tuple[list[tuple[str, float]], list[tuple[str, float]]] | None:
        """Revenue by borough and the top zones, where dbt has built the mart."""
        from taxi_cli.postgres.marts import revenue

        with connect(self.cfg) as conn:
            return revenue(conn, self.schema)

    def actual_rows(self) -> dict[str, int]:
        """filename -> rows the trip tables hold now (not the ledger's word for it)."""
        with connect(self.cfg) as conn:
            return reconcile.actual_rows(conn, self.schema)

    def _loaded(self, result: LoadResult) -> Loaded:
        table = ddl.ZONES if result.taxi == "zones" else f"{result.taxi}_tripdata"
        rows = result.table_rows if result.table_rows is not None else result.rows
        action = "unchanged" if result.skipped else str(result.mode)
        return Loaded(
            destination=self.name,
            taxi=result.taxi,
            month=result.month,
            rows=int(rows),
            action=action,
            where=f"{self.schema}.{table}",
            detail={
                "file": result.file,
                "mode": str(result.mode),
                "written": result.rows,
                "rejected": result.rejected,
                "sha256": result.sha256,
                "load_seconds": round(result.seconds, 3),
                **({"note": self._rejects_note(result)} if result.rejected else {}),
            },
        )

    def _rejects_note(self, result: LoadResult) -> str:
        return f"{result.file}: {result.rejected:,} rejected rows in {self.schema}.{ddl.REJECTS}"

    def record_failure(self, part: Partition, error: str) -> None:
        record_failure(self.cfg, part.taxi.name, part.month, part.csv_name, error)

    def load_zones(self, source: Extracted, *, force: bool, staged: Loaded | None = None) -> Loaded:
        from taxi_cli.postgres.zones import load_zones_file

        return self._loaded(load_zones_file(self.cfg, source.path, source.sha256, force=force))


def connect(cfg: Settings) -> psycopg.Connection[Any]:
    """A connection to the resolved target (autocommit); ConnectError (exit 3) if not."""
    return target.connect(cfg, autocommit=True)


def ledger_rows(cfg: Settings) -> list[LedgerRow]:
    """Every row of `{schema}.taxi_cli_loads`; [] when the table does not exist."""
    schema = ddl.check_schema(cfg.pg_schema)
    with mapped("reading the load ledger", target.describe_target(cfg)), connect(cfg) as conn:
        if not _ledger.exists(conn, schema):
            return []
        # a done row whose table or partition was dropped or truncated counts as missing
        return _ledger.read_present(conn, schema)


def record_failure(cfg: Settings, taxi: str, month: str, file: str, error: str) -> None:
    """Mark `file` failed with `error`, in its own transaction (the load rolled back)."""
    schema = ddl.check_schema(cfg.pg_schema)
    doing = f"recording the failure of {file}"
    with mapped(doing, target.describe_target(cfg)), connect(cfg) as conn:
        bootstrap(conn, schema, None)
        with conn.transaction():
            _ledger.write_failure(
                conn, schema, file=file, taxi=taxi, month=month, error=error[:2000]
            )
