"""The gcs destination's ledger of record and run history: small JSON objects in the
bucket, under the destination's prefix, each written once and never rewritten.

- `{prefix}_taxi_cli/loads/{taxi}/{month}/{finished}-g{generation}.json`: one per load
  of a month, written right after its object is committed (uploaded, or found
  identical). It names the object's generation, size, md5 and crc32c, and holds what pg's
  ledger holds: rows, source rows, rows quarantined (none: a bad row fails the file),
  the source's sha256 and uncompressed size, the upstream version (size, ETag,
  Last-Modified) and the data checks. Deleting or replacing the object does not delete
  its record, so `check` can tell.
- `{prefix}_taxi_cli/runs/{started}-{id}.json`: one per load run (`taxi_cli.runs`).

Atomicity: a record is one object, whole or absent. A load that stops between its
object and its record leaves an object newer than its latest record: planning still
sees the object (its own metadata, written with the data, names its source), `check`
reports it as not recorded, and the next load of the month writes the record.

Cost: each record's JSON is also its custom metadata (under 8 KiB), so one listing of
the prefix (1,000 objects per page, a class A operation) reads every record; no
download per record.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from taxi_cli.gcp.gcs import RECORD_META, LakeObject

ROOT = "_taxi_cli/"
LOADS = ROOT + "loads/"
RUNS = ROOT + "runs/"
_STAMP = "%Y%m%dT%H%M%S.%fZ"  # sorts as time does


def load_name(prefix: str, taxi: str, month: str, finished: datetime, generation: int) -> str:
    stamp = finished.astimezone(UTC).strftime(_STAMP)
    return f"{prefix}{LOADS}{taxi}/{month}/{stamp}-g{generation}.json"


def run_name(prefix: str, started: datetime) -> str:
    stamp = started.astimezone(UTC).strftime(_STAMP)
    return f"{prefix}{RUNS}{stamp}-{uuid.uuid4().hex[:8]}.json"


def is_record(obj: LakeObject, prefix: str) -> bool:
    return obj.name.startswith(prefix + ROOT)


def payload(obj: LakeObject) -> dict[str, Any] | None:
    """A record's JSON from its metadata; None when it is not one of ours."""
    text = obj.metadata.get(RECORD_META)
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class LoadRecord:
    taxi: str
    month: str
    data: dict[str, Any]

    @property
    def format(self) -> str:
        return str(self.data.get("format"))

    @property
    def generation(self) -> int:
        return int(self.data.get("generation") or 0)

    @property
    def finished(self) -> datetime | None:
        return moment(self.data.get("finished"))


def latest_loads(
    objects: Iterable[LakeObject], prefix: str, fmt: str | None = None
) -> dict[tuple[str, str, str], LoadRecord]:
    """(taxi, month, format) -> the latest load record (by its finish time), of `fmt`
    only when given."""
    latest: dict[tuple[str, str, str], LoadRecord] = {}
    for obj in objects:
        if not obj.name.startswith(prefix + LOADS):
            continue
        data = payload(obj)
        if data is None or (fmt is not None and data.get("format") != fmt):
            continue
        record = LoadRecord(str(data.get("taxi")), str(data.get("month")), data)
        key = (record.taxi, record.month, str(data.get("format")))
        before = latest.get(key)
        if before is None or _order(record) >= _order(before):
            latest[key] = record
    return latest


def _order(record: LoadRecord) -> tuple[datetime, int]:
    return (record.finished or datetime.min.replace(tzinfo=UTC), record.generation)


def moment(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        found = datetime.fromisoformat(value)
    except ValueError:
        return None
    return found if found.tzinfo else found.replace(tzinfo=UTC)
