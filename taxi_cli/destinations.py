"""The destination contract: what pg, gcs and bq each implement, and how they are made.

A destination is a leaf. It receives a verified file (`Extracted`, with its Parquet when
`needs_parquet`) and never downloads, verifies or calls `extract` itself; the job
(`taxi_cli.load`) drives the source, then hands each destination what it committed.
Each destination holds its own state (`ledger`): pg in the database, written in the
data's own transaction; gcs and bq in the state ledger, written once the object or table
is committed.

`gcs+bq` is composed by the job: the bq step is given the object the gcs step committed
(`staged`), so nothing is hashed, verified or uploaded twice. `bq` alone stages the
object itself through its lake.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from taxi_cli.choices import BadRows, LakeFormat, Mode, TargetName
from taxi_cli.config import Settings
from taxi_cli.errors import UsageError
from taxi_cli.model import Audit, Extracted, LedgerRow, Loaded, Partition
from taxi_cli.plan import Action

if TYPE_CHECKING:
    from taxi_cli.console import Output
    from taxi_cli.gcp.destinations import GcsDestination
    from taxi_cli.runs import RunRecord


class Destination(Protocol):
    name: str  # pg | gcs | bq
    modes: tuple[Mode, ...]  # the --mode values it can honour

    @property
    def needs_parquet(self) -> bool:
        """The job makes the typed Parquet before `load`."""
        ...

    def identity(self) -> str:
        """What the run lock is keyed by: the same database/schema, bucket or dataset."""
        ...

    def check(self) -> None:
        """Connect once up front: a destination that cannot be reached fails the run."""
        ...

    def ledger(self, *, read_only: bool = False) -> Sequence[LedgerRow]:
        """Every partition recorded; `read_only` never creates a server, file or table."""
        ...

    def load(
        self, part: Partition, source: Extracted, action: Action, staged: Loaded | None = None
    ) -> Loaded:
        """Load one verified file atomically with its ledger row."""
        ...

    def record_failure(self, part: Partition, error: str) -> None: ...

    def load_zones(self, source: Extracted, *, force: bool, staged: Loaded | None = None) -> Loaded:
        """The zone lookup (not a partition: no ledger row of its own)."""
        ...


# Capabilities only some destinations have (pg today), declared so that a caller asks
# `isinstance(d, KeepsRuns)` rather than probing for a method by its name.


@runtime_checkable
class CountsRows(Protocol):
    def actual_rows(self) -> dict[str, int]:
        """filename -> rows the destination holds now, counted there."""
        ...


@runtime_checkable
class Audits(Protocol):
    def audit(self) -> Audit:
        """Read-only: the ledger of record against what the destination holds now
        (`model.Audit`)."""
        ...


@runtime_checkable
class KeepsRuns(Protocol):
    def record_run(self, run: RunRecord) -> None: ...

    def runs(self) -> list[RunRecord]: ...


@runtime_checkable
class HasMart(Protocol):
    def revenue(self) -> tuple[list[tuple[str, float]], list[tuple[str, float]]] | None:
        """Revenue by borough and the top zones, where dbt has built the mart."""
        ...


@runtime_checkable
class VerifiesInPass(Protocol):
    """Its load reads the whole file in one pass that can verify a first download on
    the way: it calls `Extracted.settle` before it commits (pg). The job then hands it
    the download unverified: one decompression per first load instead of two."""

    verifies_in_pass: bool


@dataclass(frozen=True)
class Options:
    """The options of a load that are not settings; each destination takes its own.

    Bucket, prefix, project, dataset and location are settings (`--bucket` is a flag
    on top of TAXI_GCS_BUCKET and the config file), so `config show` can say where each
    value came from."""

    mode: Mode = Mode.REPLACE
    bad_rows: BadRows = BadRows.REJECT
    lake_format: LakeFormat = LakeFormat.PARQUET
    create_bucket: bool = False
    create_dataset: bool = False
    worker: str | None = None  # who loads, for the ledger: a backfill shard, host and pid
    migrate: bool = False  # bq: move an old-layout table aside and create the new one


def make(
    cfg: Settings,
    target: TargetName,
    options: Options = Options(),
    out: Output | None = None,
    *,
    reading: bool = False,
) -> list[Destination]:
    """The destinations of a target, in load order; no I/O (that is `check`).

    A missing setting a load needs (a bucket) is a ConfigError here, before anything
    runs; `reading` (status, a dry run) needs only what reading the ledger needs.
    """
    # Typed local imports: a pg run never imports the Google clients, nor gcs psycopg.
    made: list[Destination] = []
    lake: GcsDestination | None = None
    for name in target.destinations:
        if name == "pg":
            from taxi_cli.postgres.destination import PgDestination

            made.append(
                PgDestination(
                    cfg,
                    mode=options.mode,
                    bad_rows=options.bad_rows,
                    out=out,
                    worker=options.worker,
                )
            )
        elif name == "gcs":
            from taxi_cli.gcp.destinations import GcsDestination

            lake = GcsDestination(cfg, options, out=out, reading=reading)
            made.append(lake)
        elif name == "bq":
            from taxi_cli.gcp.destinations import BqDestination

            made.append(BqDestination(cfg, options, lake=lake, out=out, reading=reading))
    for destination in made:
        if options.mode not in destination.modes:
            raise UsageError(
                f"--mode {options.mode} is not possible for {destination.name} (it offers "
                f"{', '.join(destination.modes)}); use --mode replace"
            )
    return made


def lock_name(destination: Destination) -> str:
    digest = hashlib.sha256(destination.identity().encode()).hexdigest()[:12]
    return f"backfill-{destination.name}-{digest}"
