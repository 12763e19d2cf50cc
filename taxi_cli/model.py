"""The values that cross layers: one home and one definition each.

- `Partition`: one (taxi type, month) — the unit of work of every load command.
- `Extracted`: a verified local release file, what the source hands a destination (or
  one the pass that loads it verifies: `settle`, given what that pass `Scanned`).
- `Loaded`: what a destination did with one partition (or with the zone lookup).
- `LedgerRow`: one partition's latest state in a destination's ledger.
- `Audit`: a destination's ledger of record against what it holds now (`check`).

They import nothing but the catalogue, so the domain, the source, the destinations and
the jobs can all use them without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from taxi_cli.catalog import Partition

__all__ = ["Audit", "Extracted", "LedgerRow", "Loaded", "Partition", "Scanned", "Upstream"]

MIB = 1 << 20


@dataclass(frozen=True)
class Scanned:
    """What one pass over a release file measured, for `Extracted.settle` to judge."""

    sha256: str  # of the compressed bytes, as read
    compressed_bytes: int  # read
    uncompressed_bytes: int
    rows: int  # data records (header and blank lines excluded)


@dataclass(frozen=True)
class Extracted:
    """A verified local release file, or a downloaded one still to be verified.

    With `settle` set (a first download that the load pass verifies, issue 14: one
    decompression per first load) `path` is the download, `rows` and `sha256` are not
    known yet, and the loader must, inside its transaction and before it commits, call
    `settle(scanned)` with what its pass measured: it returns the verified file or raises
    VerifyError (then nothing may commit: the job fetches the file again). A pass that
    fails for any other reason calls `settle(None)`, which verifies the file on its own,
    so that a bad row in a good file is told apart from a bad download.
    """

    taxi: str  # taxi type name, or "zones"
    month: str | None  # None for the zone lookup
    path: Path  # the verified file under its final name (with `settle`: the download)
    rows: int  # data rows (header excluded)
    compressed_bytes: int
    uncompressed_bytes: int
    sha256: str  # of the file as stored (the compressed bytes)
    cached: bool  # True when no download was needed
    parquet_path: Path | None = None
    note: str | None = None  # e.g. a manifest mismatch whose content verified
    url: str | None = None  # where it was (or would be) downloaded from
    download_seconds: float = 0.0  # time spent downloading (0 when cached)
    verify_seconds: float = 0.0  # time spent verifying (0 when the sidecar vouched)
    etag: str | None = None  # the release asset's ETag when it was downloaded
    last_modified: str | None = None  # ... and its Last-Modified
    file_name: str | None = None  # the release file's name when `path` is not it
    settle: Callable[[Scanned | None], Extracted] | None = field(
        default=None, compare=False, repr=False
    )

    @property
    def upstream(self) -> Upstream:
        """The version of the release asset this file is (identity encoding: size = bytes)."""
        return Upstream(self.compressed_bytes, self.etag, self.last_modified)

    @property
    def csv_name(self) -> str:
        """The uncompressed file name: the `filename` lineage value in the warehouses."""
        return (self.file_name or self.path.name).removesuffix(".gz")

    def as_json(self) -> dict[str, Any]:
        payload = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "settle"}
        payload["path"] = str(self.path)
        payload["parquet_path"] = str(self.parquet_path) if self.parquet_path else None
        payload["uncompressed_mib"] = round(self.uncompressed_bytes / MIB, 2)
        payload["csv_name"] = self.csv_name
        payload["download_seconds"] = round(self.download_seconds, 3)
        payload["verify_seconds"] = round(self.verify_seconds, 3)
        return payload


@dataclass(frozen=True)
class Upstream:
    """A release asset's version as the host describes it (HEAD or the download's GET)."""

    size: int | None
    etag: str | None = None
    last_modified: str | None = None

    def change_from(self, before: Upstream) -> str | None:
        """`size 670357 -> 670361` when `self` is another asset than `before`, else None.

        Size first (every host has it); then the ETag, then Last-Modified, each only
        when both sides know it: an unknown is never a change."""
        for name, old, new in (
            ("size", before.size, self.size),
            ("ETag", before.etag, self.etag),
            ("Last-Modified", before.last_modified, self.last_modified),
        ):
            if old is not None and new is not None and old != new:
                return f"{name} {old} -> {new}"
        return None

    def as_json(self) -> dict[str, Any]:
        return {"size": self.size, "etag": self.etag, "last_modified": self.last_modified}

    @classmethod
    def from_json(cls, data: Any) -> Upstream | None:
        if not isinstance(data, dict):
            return None
        size = data.get("size")
        etag = data.get("etag")
        modified = data.get("last_modified")
        return cls(
            int(size) if isinstance(size, int) else None,
            etag if isinstance(etag, str) else None,
            modified if isinstance(modified, str) else None,
        )


@dataclass(frozen=True)
class Loaded:
    """What one destination did with one partition (month None: the zone lookup)."""

    destination: str  # pg | gcs | bq
    taxi: str
    month: str | None
    rows: int  # the file's rows in the destination after the load
    action: str  # loaded | replaced | merged | uploaded | unchanged
    where: str  # table or object URI
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def skipped(self) -> bool:
        return self.action == "unchanged"

    def as_json(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "taxi": self.taxi,
            "month": self.month,
            "rows": self.rows,
            "action": self.action,
            "where": self.where,
            **self.detail,
        }


@dataclass(frozen=True)
class LedgerRow:
    """One partition's latest state in a destination.

    `sha256` and `rows` describe the data committed in the destination; a failed retry
    of a partition that was loaded before keeps them (the destination still holds it).
    """

    file: str
    taxi: str
    month: str | None  # None: not a monthly partition (the zone lookup)
    sha256: str | None
    rows: int | None
    status: str  # 'done' | 'failed'
    error: str | None
    started: datetime | None
    finished: datetime | None
    detail: dict[str, Any] = field(default_factory=dict)
    target: str = ""
    mode: str | None = None  # pg: replace | merge


@dataclass(frozen=True)
class Audit:
    """What `check` compares, as a destination that keeps its ledger apart from its data
    (gcs records, bq's table) sees it: every partition the ledger of record holds (also
    those whose data is gone), the rows counted in the destination now per file, and
    what else is wrong or unverified per file (an object deleted or replaced)."""

    entries: list[LedgerRow]
    actual: dict[str, int]
    problems: dict[str, list[str]] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)
