"""The gcs and bq destinations of the load contract.

gcs: the month as an object at `gs://{bucket}/{prefix}{taxi}/...` (typed Parquet by
default), recorded in the state ledger once the object is verified in the bucket.
bq: the month from its lake object into `{dataset}.{taxi}_tripdata`, recorded once the
table holds it. bq *uses* a gcs destination (composition): the job hands it the object
the gcs step committed, or, for `--target bq` alone, bq stages the object itself.

Clients are per worker thread; nothing is shared between workers but the ledger.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from taxi_cli.choices import LakeFormat, Mode
from taxi_cli.config import Settings
from taxi_cli.errors import ConfigError, TaxiError
from taxi_cli.ledger import StateLedger
from taxi_cli.model import Extracted, LedgerRow, Loaded, Partition
from taxi_cli.plan import Action

if TYPE_CHECKING:
    from taxi_cli.console import Output
    from taxi_cli.destinations import Options
    from taxi_cli.gcp.bq import Warehouse
    from taxi_cli.gcp.gcs import Lake, Uploaded


class _PerThread(threading.local):
    client: Any = None


class GcsDestination:
    name = "gcs"
    modes: tuple[Mode, ...] = (Mode.REPLACE,)

    def __init__(
        self,
        cfg: Settings,
        options: Options,
        *,
        out: Output | None = None,
        reading: bool = False,
    ) -> None:
        from taxi_cli.gcp.gcs import normal_prefix

        self.cfg = cfg
        self.fmt = options.lake_format
        # Reading the ledger (status, a dry run) needs no bucket; loading does.
        if not cfg.gcs_bucket and not reading:
            raise ConfigError(
                "no bucket: pass --bucket, set TAXI_GCS_BUCKET, or gcs_bucket in the config file"
            )
        self.bucket = cfg.gcs_bucket
        self.prefix = normal_prefix(cfg.gcs_prefix)
        self.create_bucket = options.create_bucket
        self.worker = options.worker
        self.out = out
        self.state = StateLedger(cfg)
        self._local = _PerThread()

    @property
    def needs_parquet(self) -> bool:
        return self.fmt is LakeFormat.PARQUET

    def identity(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}"

    def lake(self) -> Lake:
        if self._local.client is None:
            from taxi_cli.gcp.gcs import Lake

            self._local.client = Lake(
                self.cfg, bucket=self.bucket, prefix=self.prefix, create_bucket=self.create_bucket
            )
        lake: Lake = self._local.client
        return lake

    def check(self) -> None:
        self.lake()

    def ledger(self, *, read_only: bool = False) -> Sequence[LedgerRow]:
        return self.state.rows(self.name, read_only=read_only)

    def object_uri(self, part: Partition) -> str:
        from taxi_cli.gcp.gcs import object_name

        name = object_name(self.prefix, part.taxi, part.month, str(self.fmt))
        return f"gs://{self.bucket}/{name}"

    def load(
        self, part: Partition, source: Extracted, action: Action, staged: Loaded | None = None
    ) -> Loaded:
        from taxi_cli.gcp.gcs import object_name

        local = source.parquet_path if self.needs_parquet else source.path
        if local is None:
            raise TaxiError(f"no Parquet file was made for {part.name}; rerun the command")
        name = object_name(self.prefix, part.taxi, part.month, str(self.fmt))
        up = self.lake().upload(local, name, fmt=str(self.fmt), source=source, out=self.out)
        detail = _object_detail(up)
        recorded = {**detail, "worker": self.worker} if self.worker else detail
        self.state.record_done(
            self.name, part.taxi.name, part.month, up.uri, up.source_sha256, up.rows, recorded
        )
        return Loaded(self.name, part.taxi.name, part.month, up.rows, up.action, up.uri, detail)

    def record_failure(self, part: Partition, error: str) -> None:
        self.state.record_failed(
            self.name, part.taxi.name, part.month, self.object_uri(part), error
        )

    def load_zones(self, source: Extracted, *, force: bool, staged: Loaded | None = None) -> Loaded:
        from taxi_cli.gcp.gcs import zones_object_name

        name = zones_object_name(self.prefix)
        up = self.lake().upload(source.path, name, fmt="csv", source=source, out=self.out)
        return Loaded(self.name, "zones", None, up.rows, up.action, up.uri, _object_detail(up))


def _object_detail(up: Uploaded) -> dict[str, Any]:
    return {
        "format": up.format,
        "size": up.size,
        "md5": up.md5,
        "crc32c": up.crc32c,
        "generation": up.generation,
        "source_sha256": up.source_sha256,
        "file": up.csv_name,
    }


class BqDestination:
    name = "bq"
    modes: tuple[Mode, ...] = (Mode.REPLACE,)

    def __init__(
        self,
        cfg: Settings,
        options: Options,
        *,
        lake: GcsDestination | None = None,
        out: Output | None = None,
        reading: bool = False,
    ) -> None:
        from taxi_cli.gcp.bq import check_dataset_name

        self.cfg = cfg
        self.options = options
        self.dataset = check_dataset_name(cfg.bq_dataset)
        self.project = cfg.gcp_project or None
        # `gcs+bq`: the job runs that lake first and hands over its object (`staged`).
        self.staged_by_job = lake is not None
        self.lake = lake or GcsDestination(cfg, options, out=out, reading=reading)
        self.state = StateLedger(cfg)
        self._local = _PerThread()

    @property
    def needs_parquet(self) -> bool:
        return self.lake.needs_parquet

    def identity(self) -> str:
        return f"bq:{self.project or '(credentials project)'}.{self.dataset}"

    def warehouse(self) -> Warehouse:
        if self._local.client is None:
            from taxi_cli.gcp.bq import Warehouse

            self._local.client = Warehouse(
                self.cfg,
                project=self.project,
                dataset=self.dataset,
                location=self.cfg.bq_location,
                create_dataset=self.options.create_dataset,
            )
        warehouse: Warehouse = self._local.client
        return warehouse

    def check(self) -> None:
        if not self.staged_by_job:
            self.lake.check()
        self.warehouse()

    def ledger(self, *, read_only: bool = False) -> Sequence[LedgerRow]:
        return self.state.rows(self.name, read_only=read_only)

    def load(
        self, part: Partition, source: Extracted, action: Action, staged: Loaded | None = None
    ) -> Loaded:
        if staged is None:
            staged = self.lake.load(part, source, action)
        done = self.warehouse().load_month(
            part.taxi,
            part.month,
            staged.where,
            fmt=str(self.lake.fmt),
            filename=source.csv_name,
            expected_rows=source.rows,
        )
        detail: dict[str, Any] = {
            "source": staged.where,
            "inserted": done.inserted,
            "deleted": done.deleted,
            "bytes_processed": done.bytes_processed,
            "bytes_billed": done.bytes_billed,
            "jobs": done.jobs,
        }
        self.state.record_done(
            self.name,
            part.taxi.name,
            part.month,
            source.csv_name,
            source.sha256,
            done.rows,
            {
                "table": done.table,
                "source": staged.where,
                **done.jobs,
                **({"worker": self.options.worker} if self.options.worker else {}),
            },
        )
        return Loaded(
            self.name, part.taxi.name, part.month, done.rows, "replaced", done.table, detail
        )

    def record_failure(self, part: Partition, error: str) -> None:
        self.state.record_failed(self.name, part.taxi.name, part.month, part.csv_name, error)

    def load_zones(self, source: Extracted, *, force: bool, staged: Loaded | None = None) -> Loaded:
        if staged is None:
            staged = self.lake.load_zones(source, force=force)
        done = self.warehouse().load_zones(staged.where, source.rows)
        detail = {"source": staged.where, "jobs": done.jobs}
        return Loaded(self.name, "zones", None, done.rows, "replaced", done.table, detail)
