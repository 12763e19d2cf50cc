"""`extract`: download, verify and cache the monthly release files.

API contract used by the loaders and backfill (implementation in progress):
`ensure_file` returns an `Extracted` for a verified local `.csv.gz`, downloading it
only when no verified copy is cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx

from taxi_cli.catalog import TaxiType
from taxi_cli.config import Settings
from taxi_cli.console import Output


@dataclass(frozen=True)
class Extracted:
    """A verified local release file."""

    taxi: str  # taxi type name, or "zones"
    month: str | None  # None for the zone lookup
    path: Path  # the verified file under its final name
    rows: int  # data rows (header excluded)
    compressed_bytes: int
    uncompressed_bytes: int
    sha256: str  # of the file as stored (the compressed bytes)
    cached: bool  # True when no download was needed
    parquet_path: Path | None = None
    note: str | None = None  # e.g. a manifest mismatch whose content verified

    @property
    def csv_name(self) -> str:
        """The uncompressed file name: the `filename` lineage value in the warehouses."""
        return self.path.name.removesuffix(".gz")


def ensure_file(
    cfg: Settings,
    taxi: TaxiType,
    month: str,
    *,
    force: bool = False,
    parquet: bool = False,
    out: Output | None = None,
    client: httpx.Client | None = None,
) -> Extracted:
    """Return the verified file for (taxi, month), downloading it if needed."""
    raise NotImplementedError


def ensure_zones(cfg: Settings, *, force: bool = False, out: Output | None = None) -> Extracted:
    """Return the verified zone lookup file, downloading it if needed."""
    raise NotImplementedError


def run(
    cfg: Settings, taxis: str, months: str | None, *, fmt: str, force: bool, out: Output
) -> list[Extracted]:
    """The `extract` command: every (taxi, month) of the specs, or the zones."""
    raise NotImplementedError


def report(results: list[Extracted], out: Output) -> None:
    """Print one line per file (or JSON with --json) on stdout."""
    raise NotImplementedError
