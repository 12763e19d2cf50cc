"""One adapter per backfill target over the loaders: pg, gcs, bq.

An adapter knows the target's identity (for the run lock), reads its ledger, loads one
verified month and records a failure. Where the ledger lives differs: pg keeps it in the
database (`taxi_cli_loads`, written in the same transaction as the data by the loader),
gcs and bq in the SQLite ledger under the state dir (written by their loaders once the
object or table is committed).
"""

from __future__ import annotations

import hashlib
import importlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from taxi_cli.catalog import TaxiType
from taxi_cli.config import Settings
from taxi_cli.errors import ConfigError, ConnectError, TransientError, UsageError
from taxi_cli.extract import Extracted
from taxi_cli.ledger import StateLedger
from taxi_cli.plan import Action, LedgerEntry

PG_MODES = ("replace", "merge")


@dataclass(frozen=True)
class Loaded:
    rows: int
    detail: dict[str, Any] = field(default_factory=dict)


class Target(Protocol):
    name: str

    def identity(self) -> str:
        """What the run lock is keyed by: the same database/schema, bucket or dataset."""
        ...

    def check(self) -> None:
        """Connect once up front: a target that cannot be reached fails the run (exit 3)."""
        ...

    def ledger(self) -> Sequence[LedgerEntry]: ...

    def load(self, taxi: TaxiType, month: str, extracted: Extracted, action: Action) -> Loaded:
        """Load one verified month; the ledger says done once this returns."""
        ...

    def record_failure(self, taxi: TaxiType, month: str, file: str, error: str) -> None: ...


def lock_name(target: Target) -> str:
    digest = hashlib.sha256(target.identity().encode()).hexdigest()[:12]
    return f"backfill-{target.name}-{digest}"


# ---- pg ---------------------------------------------------------------------------------


def _pg() -> Any:
    # The loader package is imported lazily: status and schedule do not need psycopg.
    return importlib.import_module("taxi_cli.postgres")


class PgTarget:
    name = "pg"

    def __init__(self, cfg: Settings, *, mode: str = "replace") -> None:
        if mode not in PG_MODES:
            raise UsageError(f"--mode must be replace or merge, not {mode!r}")
        self.cfg = cfg
        self.mode = mode
        self._identity: str | None = None

    def identity(self) -> str:
        from taxi_cli.postgres.target import server_identity

        if self._identity is None:  # the server's own name for it, not the URL's
            self._identity = server_identity(self.cfg)
        return self._identity

    def check(self) -> None:
        from taxi_cli.postgres.target import connect

        connect(self.cfg).close()

    def ledger(self) -> Sequence[LedgerEntry]:
        rows: Sequence[LedgerEntry] = _pg().ledger_rows(self.cfg)
        return rows

    def load(self, taxi: TaxiType, month: str, extracted: Extracted, action: Action) -> Loaded:
        result = _pg().load_month(
            self.cfg,
            taxi,
            month,
            extracted,
            mode=self.mode,
            force=action is not Action.LOAD,
        )
        # A load the loader skipped (its own ledger hit) still reports the file's rows.
        rows = result.table_rows if result.table_rows is not None else result.rows
        return Loaded(int(rows), {"mode": self.mode, "skipped": bool(result.skipped)})

    def record_failure(self, taxi: TaxiType, month: str, file: str, error: str) -> None:
        _pg().record_failure(self.cfg, taxi, month, file, error)


# ---- gcs and bq ---------------------------------------------------------------------------


class _PerThread(threading.local):
    lake: Any = None
    warehouse: Any = None


class GcsTarget:
    """Upload the month as typed Parquet to gs://{bucket}/{prefix}; the uploader records
    the partition in the SQLite ledger once the object is verified in the bucket."""

    name = "gcs"
    fmt = "parquet"

    def __init__(self, cfg: Settings) -> None:
        self.cfg = cfg
        self.state = StateLedger(cfg)
        self._local = _PerThread()  # clients are per worker: nothing shared but the ledger

    def identity(self) -> str:
        return f"gs://{self.cfg.gcs_bucket}/{self.cfg.gcs_prefix}"

    def lake(self) -> Any:
        if self._local.lake is None:
            from taxi_cli.gcp import gcs

            self._local.lake = gcs.Lake(self.cfg)
        return self._local.lake

    def check(self) -> None:
        if not self.cfg.gcs_bucket:
            raise ConfigError("no bucket: set TAXI_GCS_BUCKET or gcs_bucket in the config file")
        self.lake()

    def ledger(self) -> Sequence[LedgerEntry]:
        return self.state.rows(self.name)

    def load(self, taxi: TaxiType, month: str, extracted: Extracted, action: Action) -> Loaded:
        from taxi_cli.gcp import gcs

        up = gcs.upload_month(self.lake(), taxi, month, fmt=self.fmt, source=extracted)
        return Loaded(up.rows, {"uri": up.uri, "action": up.action})

    def record_failure(self, taxi: TaxiType, month: str, file: str, error: str) -> None:
        from taxi_cli.gcp import gcs

        prefix = self.cfg.gcs_prefix
        prefix += "/" if prefix and not prefix.endswith("/") else ""
        uri = f"gs://{self.cfg.gcs_bucket}/{gcs.object_name(prefix, taxi, month, self.fmt)}"
        self.state.record_failed(self.name, taxi.name, month, uri, error)


class BqTarget(GcsTarget):
    """Load the month from its gs:// object into `{dataset}.{taxi}_tripdata` (uploading the
    object first when it is not there); the loader records the partition once merged."""

    name = "bq"

    def identity(self) -> str:
        return f"bq:{self.cfg.gcp_project or '(credentials project)'}.{self.cfg.bq_dataset}"

    def warehouse(self) -> Any:
        if self._local.warehouse is None:
            from taxi_cli.gcp import bq

            self._local.warehouse = bq.Warehouse(self.cfg)
        return self._local.warehouse

    def check(self) -> None:
        super().check()
        self.warehouse()

    def load(self, taxi: TaxiType, month: str, extracted: Extracted, action: Action) -> Loaded:
        from taxi_cli.gcp import bq

        done = bq.load_month(
            self.warehouse(), self.lake(), taxi, month, fmt=self.fmt, extracted=extracted
        )
        return Loaded(done.rows, {"table": done.table})

    def record_failure(self, taxi: TaxiType, month: str, file: str, error: str) -> None:
        self.state.record_failed(self.name, taxi.name, month, taxi.csv_name(month), error)


def make_targets(cfg: Settings, names: Sequence[str], *, mode: str = "replace") -> list[Target]:
    made: list[Target] = []
    for name in names:
        if name == "pg":
            made.append(PgTarget(cfg, mode=mode))
        elif name == "gcs":
            made.append(GcsTarget(cfg))
        elif name == "bq":
            made.append(BqTarget(cfg))
        else:
            raise UsageError(f"unknown target {name!r}; accepted: pg, gcs, bq, gcs+bq")
    return made


def ledger_for_status(cfg: Settings, name: str) -> Sequence[LedgerEntry]:
    if name not in ("pg", "gcs", "bq"):
        raise UsageError(f"--target must be pg, gcs or bq, not {name!r}")
    return make_targets(cfg, [name])[0].ledger()


def is_retryable(exc: BaseException) -> bool:
    """Worth another attempt of the same partition: network, 5xx, a lost connection."""
    return isinstance(exc, TransientError | ConnectError)
