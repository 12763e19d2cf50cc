"""`load-gcs`: upload verified month files to `gs://{bucket}/{prefix}{taxi}/...`.

The default object is typed Parquet, so that BigQuery never meets the CSV column
mismatches of the course. Every upload is a resumable session (a dropped connection
resumes at the last chunk), carries the source's sha256 and row count as object
metadata, and is checked afterwards: the object's md5 and crc32c must equal the local
file's. An identical object is left alone; a different one is replaced under a
generation precondition, so a concurrent writer makes this upload fail rather than be
silently overwritten. The metadata is the gcs destination's record of the month
(`Lake.objects` lists it back); no bucket metadata is read unless asked (see `Lake`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from taxi_cli import __version__
from taxi_cli.catalog import ZONES_FILE, TaxiType
from taxi_cli.config import Settings
from taxi_cli.console import Output, add_task
from taxi_cli.errors import ConfigError, DataError, TransientError
from taxi_cli.gcp import clients

if TYPE_CHECKING:
    from taxi_cli.model import Extracted

log = logging.getLogger("taxi_cli.gcs")

CHUNK_SIZE = 8 * 1024 * 1024  # resumable chunk: a multiple of 256 KiB
CONTENT_TYPES = {"parquet": "application/vnd.apache.parquet", "csv.gz": "application/gzip"}
ZONES_DIR = "misc"  # the release host's layout: misc/taxi_zone_lookup.csv
RECORD_META = "taxi-cli-record"  # a ledger or run record's JSON, as object metadata
# The tail read for a Parquet footer: ours take ~2 KiB per 64k-row group (34 KiB for a
# million yellow rows), so this holds the footer of a month of up to ~7 million rows; a
# larger one takes a second read.
FOOTER_READ = 256 * 1024


@dataclass(frozen=True)
class Digests:
    """Checksums of a local file, in GCS's encodings (base64) and sha256 hex."""

    size: int
    md5: str
    crc32c: str
    sha256: str


def digests(path: Path) -> Digests:
    import google_crc32c

    md5, sha, crc = hashlib.md5(usedforsecurity=False), hashlib.sha256(), google_crc32c.Checksum()  # type: ignore[no-untyped-call]
    size = 0
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            md5.update(block)
            sha.update(block)
            crc.update(block)  # type: ignore[no-untyped-call]
            size += len(block)
    return Digests(
        size=size,
        md5=base64.b64encode(md5.digest()).decode(),
        crc32c=base64.b64encode(crc.digest()).decode(),  # type: ignore[no-untyped-call]
        sha256=sha.hexdigest(),
    )


@dataclass(frozen=True)
class Uploaded:
    """One object in the lake, as this run left it."""

    taxi: str
    month: str | None
    uri: str
    bucket: str
    name: str
    format: str
    action: str  # uploaded | replaced | unchanged
    size: int
    md5: str
    crc32c: str
    generation: int
    rows: int
    source_sha256: str  # sha256 of the verified release file the object was made from
    csv_name: str  # the `filename` lineage value in the warehouses


def object_name(prefix: str, taxi: TaxiType, month: str, fmt: str) -> str:
    """`{prefix}{taxi}/{taxi}_tripdata_{YYYY}-{MM}.{parquet|csv.gz}`."""
    return f"{prefix}{taxi.name}/{taxi.name}_tripdata_{month}.{fmt}"


def normal_prefix(prefix: str) -> str:
    """`raw`, `raw/` -> `raw/`; "" stays "" (objects at the bucket's top)."""
    return prefix + "/" if prefix and not prefix.endswith("/") else prefix


def zones_object_name(prefix: str) -> str:
    return f"{prefix}{ZONES_DIR}/{ZONES_FILE}"


class _ProgressReader:
    """A read-only file that reports how far the upload has read it."""

    def __init__(self, fh: BinaryIO, advance: Callable[[int], None]) -> None:
        self._fh = fh
        self._advance = advance

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._advance(self._fh.tell())
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()


@dataclass(frozen=True)
class LakeObject:
    """One object under the prefix, as a listing describes it (no download)."""

    name: str
    uri: str
    size: int
    generation: int
    updated: datetime | None
    metadata: dict[str, str]
    md5: str | None = None  # base64, as GCS gives it (composite objects have none)
    crc32c: str | None = None


class Lake:
    """One bucket of the data lake, opened once per command (and per worker).

    No bucket metadata is read unless `create_bucket`: `storage.buckets.get` is not in
    `roles/storage.objectAdmin` ("does not grant permission to read or edit bucket
    metadata", https://cloud.google.com/storage/docs/access-control/iam-roles), and
    `client.bucket()` sends nothing. A missing bucket shows on the first object request
    (`probe`, a one-object listing: `storage.objects.list`) as a 404, and is then a
    ConfigError. With `create_bucket` (or `read_bucket`, the `gcs_check_location` setting)
    the bucket is read (`storage.buckets.get`) and, with `create_bucket`, created in
    `location` (the dataset's) when missing; its location is then known.
    """

    def __init__(
        self,
        cfg: Settings,
        *,
        bucket: str,
        prefix: str,
        create_bucket: bool = False,
        read_bucket: bool = False,
        location: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.bucket_name = bucket
        self.prefix = prefix  # "" or ending in "/" (`normal_prefix`)
        self.auth = clients.storage_auth(cfg)
        self.client = clients.storage_client(self.auth)
        self.location: str | None = None  # known only when the bucket was read
        self._created_in: str | None = None
        if create_bucket or read_bucket:
            self.bucket = self._open_or_create(location or cfg.bq_location, create_bucket)
            # A bucket made just now is where it was asked to be.
            self.location = self._created_in or str(self.bucket.location or "") or None
        else:
            self.bucket = self.client.bucket(bucket)

    def _missing(self) -> ConfigError:
        return ConfigError(
            f"bucket gs://{self.bucket_name} does not exist in project "
            f"{self.auth.project}; create it or pass --create-bucket"
        )

    def _open_or_create(self, location: str, create: bool) -> Any:
        from google.api_core import exceptions as gexc

        what = f"bucket gs://{self.bucket_name}"
        retry = clients.preflight_retry(self.cfg)
        try:
            return self.client.get_bucket(self.bucket_name, retry=retry)
        except gexc.NotFound:
            if not create:
                raise self._missing() from None
        except Exception as exc:
            raise clients.api_error(exc, what, self.auth) from exc
        try:
            log.info("creating bucket gs://%s in %s", self.bucket_name, location)
            made = self.client.create_bucket(
                self.bucket_name, project=self.auth.project, location=location
            )
            self._created_in = location
            return made
        except gexc.Conflict:
            return self.client.get_bucket(self.bucket_name)
        except Exception as exc:
            raise clients.api_error(exc, f"creating {what}", self.auth) from exc

    def probe(self) -> None:
        """One object request: reachable, allowed (`storage.objects.list`), and there."""
        self.objects(limit=1)

    def objects(self, *, limit: int | None = None, under: str = "") -> list[LakeObject]:
        """The objects under the prefix (and `under` it) with their metadata (a listing:
        no downloads)."""
        from google.api_core import exceptions as gexc

        retry = clients.preflight_retry(self.cfg)
        try:
            found = self.client.list_blobs(
                self.bucket,
                prefix=(self.prefix + under) or None,
                max_results=limit,
                retry=retry,
            )
            return [
                LakeObject(
                    name=blob.name or "",
                    uri=self.uri(blob.name or ""),
                    size=int(blob.size or 0),
                    generation=int(blob.generation or 0),
                    updated=blob.updated,
                    metadata=dict(blob.metadata or {}),
                    md5=blob.md5_hash,
                    crc32c=blob.crc32c,
                )
                for blob in found
            ]
        except gexc.NotFound:
            # Listing a bucket's objects is 404 only when the bucket is not there.
            raise self._missing() from None
        except Exception as exc:
            raise clients.api_error(exc, f"listing gs://{self.bucket_name}", self.auth) from exc

    def uri(self, name: str) -> str:
        return f"gs://{self.bucket_name}/{name}"

    def put_record(self, name: str, record: dict[str, Any]) -> None:
        """Write a small JSON record once (`ifGenerationMatch=0`: never over another).

        The JSON is also the object's `taxi-cli-record` metadata, so that a listing
        returns every record without a download per record."""
        from google.api_core import exceptions as gexc

        text = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
        blob = self.bucket.blob(name)
        blob.metadata = {RECORD_META: text}
        try:
            blob.upload_from_string(text, content_type="application/json", if_generation_match=0)
        except gexc.PreconditionFailed:
            # the name is this write's own (time and generation): a retried request whose
            # first attempt landed finds it there
            log.debug("%s was already written", self.uri(name))
        except Exception as exc:
            raise clients.api_error(exc, f"writing {self.uri(name)}", self.auth) from exc

    def parquet_rows(self, name: str, size: int, generation: int) -> int | None:
        """The rows a Parquet object holds, from its footer (FileMetaData.num_rows), read
        with one ranged GET of its last bytes (two when the footer is larger); None when
        the object is not Parquet, or no longer that generation."""
        import pyarrow as pa  # type: ignore[import-untyped]
        import pyarrow.parquet as pq  # type: ignore[import-untyped]
        from google.api_core import exceptions as gexc

        blob = self.bucket.blob(name, generation=generation)

        def tail(start: int) -> bytes:
            data: bytes = blob.download_as_bytes(start=start, end=size - 1, checksum=None)
            return data

        try:
            data = tail(max(0, size - FOOTER_READ))
            if len(data) < 12 or data[-4:] != b"PAR1":
                return None
            need = int.from_bytes(data[-8:-4], "little") + 8
            if need > len(data):
                data = tail(max(0, size - need))
            return int(pq.read_metadata(pa.BufferReader(b"PAR1" + data[-need:])).num_rows)
        except gexc.NotFound:
            return None
        except pa.ArrowException:
            return None
        except Exception as exc:
            raise clients.api_error(
                exc, f"reading the footer of {self.uri(name)}", self.auth
            ) from exc

    def get(self, name: str) -> Any | None:
        """The object's current metadata, or None when it does not exist."""
        try:
            return self.bucket.get_blob(name)
        except Exception as exc:
            raise clients.api_error(exc, f"reading {self.uri(name)}", self.auth) from exc

    def upload(
        self,
        local: Path,
        name: str,
        *,
        fmt: str,
        source: Extracted,
        out: Output | None = None,
        vet: Callable[[], dict[str, str]] | None = None,
    ) -> Uploaded:
        """Put `local` at `name` unless an identical object is there; verify the result.

        `vet` runs once the local file is verified, before any request: it may refuse
        the file (raise), else it gives more metadata for the object."""
        local_sum = _verified_digests(local, fmt, source)
        metadata = vet() if vet is not None else {}
        uri = self.uri(name)
        existing = self.get(name)
        if existing is not None and _same(existing, local_sum):
            log.info("%s is already up to date", uri)
            return self._result(existing, fmt, "unchanged", source)
        blob = self.bucket.blob(name, chunk_size=CHUNK_SIZE)
        blob.metadata = {
            "taxi-cli-source": source.csv_name,
            "taxi-cli-source-sha256": source.sha256,
            "taxi-cli-rows": str(source.rows),
            "taxi-cli-version": __version__,
            **metadata,
        }
        # 0 = "must not exist": two writers racing for a new object cannot both win.
        generation = existing.generation if existing is not None else 0
        action = "replaced" if existing is not None else "uploaded"
        log.info("uploading %s to %s (%s bytes)", local.name, uri, f"{local_sum.size:,}")
        self._send(blob, local, local_sum, generation, out)
        # The upload response set our generation, md5 and crc32c on `blob`: a reload could
        # return a concurrent writer's newer generation (and `_discard` would delete it).
        if not _same(blob, local_sum):
            self._discard(blob)
            raise DataError(
                f"{uri} does not match {local} after the upload (md5 {blob.md5_hash} vs "
                f"{local_sum.md5}); the local file changed while uploading? rerun load-gcs"
            )
        return self._result(blob, fmt, action, source)

    def _send(
        self,
        blob: Any,
        local: Path,
        local_sum: Digests,
        generation: int,
        out: Output | None,
    ) -> None:
        from google.api_core import exceptions as gexc
        from google.resumable_media.common import DataCorruption

        with local.open("rb") as fh, _progress(out, blob.name or "", local_sum.size) as advance:
            try:
                # size=None: always a resumable session, even below the multipart limit.
                blob.upload_from_file(
                    _ProgressReader(fh, advance),
                    size=None,
                    content_type=_content_type(blob.name or ""),
                    if_generation_match=generation,
                    checksum="crc32c",
                )
            except gexc.NotFound:
                raise self._missing() from None
            except gexc.PreconditionFailed as exc:
                raise TransientError(
                    f"{self.uri(blob.name or '')} was changed by another writer during the "
                    "upload; rerun load-gcs"
                ) from exc
            except DataCorruption as exc:
                raise DataError(
                    f"{self.uri(blob.name or '')}: the upload arrived corrupted (crc32c "
                    "mismatch); rerun load-gcs"
                ) from exc
            except Exception as exc:
                raise clients.api_error(exc, f"uploading {local}", self.auth) from exc

    def _discard(self, blob: Any) -> None:
        try:
            blob.delete(if_generation_match=blob.generation)
        except Exception as exc:  # the caller reports the mismatch; this is best effort
            log.warning("could not delete the bad object %s: %s", self.uri(blob.name or ""), exc)

    def _result(self, blob: Any, fmt: str, action: str, source: Extracted) -> Uploaded:
        return Uploaded(
            taxi=source.taxi,
            month=source.month,
            uri=self.uri(blob.name or ""),
            bucket=self.bucket_name,
            name=blob.name or "",
            format=fmt,
            action=action,
            size=int(blob.size or 0),
            md5=blob.md5_hash or "",
            crc32c=blob.crc32c or "",
            generation=int(blob.generation or 0),
            rows=source.rows,
            source_sha256=source.sha256,
            csv_name=source.csv_name,
        )


def _content_type(name: str) -> str:
    if name.endswith(".parquet"):
        return CONTENT_TYPES["parquet"]
    return CONTENT_TYPES["csv.gz"] if name.endswith(".gz") else "text/csv"


def _same(blob: Any, local: Digests) -> bool:
    """Identical content: crc32c always, md5 when GCS has one (composites have none)."""
    if int(blob.size or -1) != local.size or blob.crc32c != local.crc32c:
        return False
    return blob.md5_hash is None or blob.md5_hash == local.md5


def _verified_digests(local: Path, fmt: str, source: Extracted) -> Digests:
    """Checksums of the file about to be uploaded, refusing one that no longer verifies.

    The release file must still have the sha256 `extract` verified; a Parquet file must
    still read and hold the verified row count.
    """
    if not local.is_file():
        raise DataError(f"{local} is missing; run `taxi-cli extract` again")
    got = digests(local)
    if fmt == "parquet" or local.suffix == ".parquet":
        _check_parquet(local, source.rows)
        if digests(source.path).sha256 != source.sha256:
            raise _changed(source.path)
    elif got.sha256 != source.sha256:
        raise _changed(local)
    return got


def _changed(path: Path) -> DataError:
    return DataError(
        f"{path} changed after it was verified (sha256 differs); nothing was uploaded; "
        "run `taxi-cli extract --force` for a fresh copy"
    )


def _check_parquet(path: Path, rows: int) -> None:
    import polars as pl

    try:
        got = pl.scan_parquet(path).select(pl.len()).collect().item()
    except Exception as exc:
        raise DataError(
            f"{path} is not readable Parquet ({type(exc).__name__}); nothing was uploaded; "
            "run `taxi-cli extract --format parquet --force`"
        ) from exc
    if got != rows:
        raise DataError(
            f"{path} holds {got:,} rows but its source has {rows:,}; nothing was uploaded; "
            "run `taxi-cli extract --format parquet --force`"
        )


class _progress:
    """A byte progress bar for one upload (a no-op when progress is hidden)."""

    def __init__(self, out: Output | None, label: str, total: int) -> None:
        self._out, self._label, self._total = out, label, total
        self._cm: Any = None

    def __enter__(self) -> Callable[[int], None]:
        if self._out is None:
            return lambda done: None
        self._cm = self._out.transfer_progress()
        progress = self._cm.__enter__()
        task = add_task(progress, f"upload {self._label}", self._total)
        if progress is None or task is None:
            return lambda done: None
        return lambda done: progress.update(task, completed=min(done, self._total))

    def __exit__(self, *exc: object) -> None:
        if self._cm is not None:
            self._cm.__exit__(*exc)
