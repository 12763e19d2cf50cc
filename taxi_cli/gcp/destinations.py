"""The gcs and bq destinations of the load contract; their state lives in the cloud.

gcs: the month as an object at `gs://{bucket}/{prefix}{taxi}/...` (typed Parquet by
default). The data checks run on the local file before the upload (`taxi_cli.lake_checks`;
`fail` limits stop the partition with the object untouched). The object's own metadata
(source file, its sha256, rows, checks, tool version; written with the upload and
verified) says what it is: `ledger()` lists the objects under the prefix, so a deleted
object is missing and is loaded again. After the upload, a load record
(`taxi_cli.gcp.records`, under `{prefix}_taxi_cli/`) is written: the ledger of record,
which survives the object, so `check` (`audit()`) sees an object deleted or replaced
behind taxi-cli's back. Runs are recorded there too. A failed attempt leaves no object;
it is kept in the local state dir for display only (`status`, the plan's reason), never
as the truth: deleting the state dir loses nothing a run needs.

bq: the month from its lake object into its `file_month` partition of
`{dataset}.{taxi}_tripdata`; the append-only table `{dataset}.taxi_cli_loads` is the
record (one row per load and per failure), written right after the partition's job
succeeded and its row count was read back. `ledger()` reads it (free tabledata.list;
never creates anything). bq *uses* a gcs destination (composition): the job hands it
the object the gcs step committed, or, for `--target bq` alone, bq stages the object
itself.

Clients are per worker thread; nothing is shared between workers.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from taxi_cli import __version__, lake_checks
from taxi_cli.choices import LakeFormat, Mode
from taxi_cli.config import Settings
from taxi_cli.errors import ConfigError, DataError, TaxiError
from taxi_cli.ledger import StateLedger
from taxi_cli.model import Audit, Extracted, LedgerRow, Loaded, Partition
from taxi_cli.plan import Action
from taxi_cli.quality import Limits, Outcome, breach_message

if TYPE_CHECKING:
    from taxi_cli.console import Output
    from taxi_cli.destinations import Options
    from taxi_cli.gcp.bq import Warehouse
    from taxi_cli.gcp.gcs import Lake, LakeObject, Uploaded
    from taxi_cli.runs import RunRecord

log = logging.getLogger("taxi_cli.gcp")

# `{taxi}/{taxi}_tripdata_{YYYY-MM}.{parquet|csv.gz}` under the prefix (gcs.object_name)
_OBJECT = re.compile(r"(?P<taxi>[a-z]+)/(?P=taxi)_tripdata_(?P<month>\d{4}-\d{2})\.(?P<fmt>.+)$")


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
        # A dry run or status reads the bucket's listing: it still needs the bucket's name,
        # but an unset bucket is reported when the ledger is read, not here.
        if not cfg.gcs_bucket and not reading:
            raise ConfigError(_NO_BUCKET)
        self.bucket = cfg.gcs_bucket
        self.prefix = normal_prefix(cfg.gcs_prefix)
        self.create_bucket = options.create_bucket
        self.worker = options.worker
        self.out = out
        self.failures = StateLedger(cfg)  # display only: the objects are the truth
        # Where a bucket made by --create-bucket goes: the dataset's location (set by a
        # BqDestination that uses this lake), else the location setting.
        self.location_of_dataset: Callable[[], str] | None = None
        self._local = _PerThread()

    @property
    def needs_parquet(self) -> bool:
        return self.fmt is LakeFormat.PARQUET

    def identity(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}"

    def lake(self) -> Lake:
        if self._local.client is None:
            from taxi_cli.gcp.gcs import Lake

            if not self.bucket:
                raise ConfigError(_NO_BUCKET)
            reads_bucket = self.create_bucket or self.cfg.gcs_check_location
            location = None
            if reads_bucket and self.location_of_dataset is not None:
                location = self.location_of_dataset()
            self._local.client = Lake(
                self.cfg,
                bucket=self.bucket,
                prefix=self.prefix,
                create_bucket=self.create_bucket,
                read_bucket=self.cfg.gcs_check_location,
                location=location,
            )
        lake: Lake = self._local.client
        return lake

    def check(self) -> None:
        self.lake().probe()

    def ledger(self, *, read_only: bool = False) -> Sequence[LedgerRow]:
        """Done: every taxi-cli object of this format under the prefix (a deleted object
        is missing, so planning loads it again), with what its load record adds when the
        record is of this very generation. Failed: local records of partitions that have
        no object (display only)."""
        from taxi_cli.gcp import records

        listing = self.lake().objects()
        loads = records.latest_loads(listing, self.prefix, str(self.fmt))
        done = {}
        for obj in listing:
            row = self._row_of(obj)
            if row is None:
                continue
            record = loads.get((row.taxi, row.month or "", str(self.fmt)))
            if record is not None and record.generation == obj.generation:
                row = _with_record(row, record.data)
            done[(row.taxi, row.month)] = row
        return sorted([*done.values(), *self._failed(done, read_only)], key=_order)

    def _failed(self, done: Any, read_only: bool) -> list[LedgerRow]:
        return [
            r
            for r in self.failures.rows(self.name, read_only=read_only)
            if r.status == "failed" and (r.taxi, r.month) not in done
        ]

    def audit(self) -> Audit:
        """Every month the load records (or a taxi-cli object) name, against the objects
        there now, in either format (whatever the lake was loaded as): a deleted or
        replaced object is a problem naming it; a Parquet object's rows are its footer's
        (a ranged read), a csv.gz object's are vouched for by its size, md5 and crc32c
        equalling the record's (not counted)."""
        from taxi_cli.gcp import records

        listing = self.lake().objects()
        loads = records.latest_loads(listing, self.prefix)
        by_name = {obj.name: obj for obj in listing}
        objects: dict[tuple[str, str, str], tuple[LakeObject, LedgerRow]] = {}
        for obj in listing:
            row = self._row_of(obj, any_format=True)
            if row is not None:
                objects[(row.taxi, row.month or "", str(row.detail["format"]))] = (obj, row)
        audit = Audit([], {})
        entries: list[LedgerRow] = []
        for key in sorted(set(loads) | set(objects)):
            record = loads.get(key)
            seen = objects.get(key)
            if record is None:
                assert seen is not None
                obj, row = seen
                entries.append(row)
                audit.warnings.setdefault(row.file, []).append(
                    f"{row.file}: no load record for generation {obj.generation} (loaded "
                    "before taxi-cli kept records, or the load stopped before writing it); "
                    "its own metadata was used: reload it to record it"
                )
                self._count(obj, None, audit)
                continue
            entry = self._recorded_row(record)
            entries.append(entry)
            # by its name: an object replaced by another writer may lack our metadata
            self._compare(entry, record, by_name.get(str(record.data.get("object"))), audit)
        entries += self._failed({(e.taxi, e.month) for e in entries}, True)
        return Audit(sorted(entries, key=_order), audit.actual, audit.problems, audit.warnings)

    def _recorded_row(self, record: Any) -> LedgerRow:
        data = record.data
        from taxi_cli.gcp import records

        name = data.get("object")
        return _with_record(
            LedgerRow(
                # in this bucket (a copied bucket's records name the one they came from)
                file=self.lake().uri(name) if isinstance(name, str) else str(data.get("uri")),
                taxi=record.taxi,
                month=record.month,
                sha256=data.get("source_sha256"),
                rows=data.get("rows"),
                status="done",
                error=None,
                started=records.moment(data.get("started")),
                finished=record.finished,
                detail={"format": data.get("format"), "size": data.get("size")},
                target=self.name,
            ),
            data,
        )

    def _compare(self, entry: LedgerRow, record: Any, obj: LakeObject | None, audit: Audit) -> None:
        name = entry.file
        if obj is None:
            audit.problems.setdefault(name, []).append(
                f"{name}: the object is gone (deleted since the load recorded generation "
                f"{record.generation}); reload it"
            )
            return
        data = record.data
        if obj.generation != record.generation:
            audit.problems.setdefault(name, []).append(
                f"{name}: the object was replaced since its load (generation "
                f"{obj.generation}, the record says {record.generation}); reload it"
            )
        elif (obj.size, obj.md5, obj.crc32c) != (
            data.get("size"),
            data.get("md5"),
            data.get("crc32c"),
        ):
            audit.problems.setdefault(name, []).append(
                f"{name}: the object's size, md5 or crc32c differ from its load record; reload it"
            )
        self._count(obj, record, audit)

    def _count(self, obj: LakeObject, record: Any, audit: Audit) -> None:
        """The object's rows: counted in a Parquet footer; a csv.gz object's are the
        record's when its bytes are the recorded ones (size, md5, crc32c)."""
        if obj.name.endswith(".parquet"):
            rows = self.lake().parquet_rows(obj.name, obj.size, obj.generation)
            if rows is not None:
                audit.actual[obj.uri] = rows
            else:
                audit.problems.setdefault(obj.uri, []).append(
                    f"{obj.uri}: not readable as Parquet (no footer); reload it"
                )
            return
        if record is None:
            rows_meta = obj.metadata.get("taxi-cli-rows", "")
            if rows_meta.isdigit():
                audit.actual[obj.uri] = int(rows_meta)
            return
        data = record.data
        same = (obj.generation, obj.size, obj.md5, obj.crc32c) == (
            record.generation,
            data.get("size"),
            data.get("md5"),
            data.get("crc32c"),
        )
        if same and isinstance(data.get("rows"), int):
            audit.actual[obj.uri] = int(data["rows"])

    def record_run(self, run: RunRecord) -> None:
        """One JSON object per run under `{prefix}_taxi_cli/runs/`."""
        from taxi_cli.gcp import records

        self.lake().put_record(records.run_name(self.prefix, run.started), run.as_json())

    def runs(self) -> list[RunRecord]:
        """The latest 100 runs, newest first (one listing, no downloads)."""
        from taxi_cli.gcp import records
        from taxi_cli.runs import RunRecord

        found = []
        for obj in self.lake().objects(under=records.RUNS):
            data = records.payload(obj)
            if data is None:
                continue
            try:
                found.append(RunRecord.from_json(data))
            except (KeyError, ValueError, TypeError):
                log.debug("%s is not a run record", obj.uri)
        found.sort(key=lambda r: r.started, reverse=True)
        return found[:100]

    def _row_of(self, obj: LakeObject, *, any_format: bool = False) -> LedgerRow | None:
        match = _OBJECT.match(obj.name[len(self.prefix) :])
        meta = obj.metadata
        if match is None or not obj.name.startswith(self.prefix):
            return None
        if match["fmt"] not in ("parquet", "csv.gz") or (
            not any_format and match["fmt"] != str(self.fmt)
        ):
            return None
        if "taxi-cli-source-sha256" not in meta or "taxi-cli-rows" not in meta:
            return None  # not written by taxi-cli: not a record (a load replaces it)
        try:
            rows = int(meta["taxi-cli-rows"])
        except ValueError:
            return None
        return LedgerRow(
            file=obj.uri,
            taxi=match["taxi"],
            month=match["month"],
            sha256=meta["taxi-cli-source-sha256"],
            rows=rows,
            status="done",
            error=None,
            started=None,
            finished=obj.updated,
            detail={
                "format": match["fmt"],
                "size": obj.size,
                "generation": obj.generation,
                "source": meta.get("taxi-cli-source"),
                "version": meta.get("taxi-cli-version"),
            },
            target=self.name,
        )

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
        started = datetime.now(UTC)
        limits = Limits.of(self.cfg)
        checked: list[Outcome] = []

        def vet() -> dict[str, str]:
            # The data checks of the verified file, before anything is sent: a breach of
            # `fail` limits leaves the object as it was (and, for bq, the partition).
            outcome = lake_checks.outcome(
                local, part.taxi, part.month, limits, parquet=self.needs_parquet
            )
            if outcome.breaches and limits.fail:
                raise DataError(breach_message(source.csv_name, outcome))
            checked.append(outcome)
            return {"taxi-cli-checks": json.dumps(outcome.as_json(), separators=(",", ":"))}

        # The upload writes the object's own record (its metadata) with the data...
        up = self.lake().upload(
            local, name, fmt=str(self.fmt), source=source, out=self.out, vet=vet
        )
        detail = _object_detail(up) | _source_detail(source) | {"checks": checked[0].as_json()}
        # ... and the load record (the ledger of record) follows, once it is committed.
        self._record_load(part, up, detail, started)
        return Loaded(self.name, part.taxi.name, part.month, up.rows, up.action, up.uri, detail)

    def _record_load(
        self, part: Partition, up: Uploaded, detail: dict[str, Any], started: datetime
    ) -> None:
        from taxi_cli.gcp import records

        finished = datetime.now(UTC)
        record = {
            **detail,
            "taxi": part.taxi.name,
            "month": part.month,
            "uri": up.uri,
            "object": up.name,
            "rows": up.rows,
            "action": up.action,
            "started": started.isoformat(),
            "finished": finished.isoformat(),
            "worker": self.worker,
            "tool_version": __version__,
        }
        name = records.load_name(self.prefix, part.taxi.name, part.month, finished, up.generation)
        self.lake().put_record(name, record)

    def record_failure(self, part: Partition, error: str) -> None:
        self.failures.record_failed(
            self.name, part.taxi.name, part.month, self.object_uri(part), error
        )

    def load_zones(self, source: Extracted, *, force: bool, staged: Loaded | None = None) -> Loaded:
        from taxi_cli.gcp.gcs import zones_object_name

        name = zones_object_name(self.prefix)
        up = self.lake().upload(source.path, name, fmt="csv", source=source, out=self.out)
        return Loaded(self.name, "zones", None, up.rows, up.action, up.uri, _object_detail(up))


_NO_BUCKET = "no bucket: pass --bucket, set TAXI_GCS_BUCKET, or gcs_bucket in the config file"


def _order(row: LedgerRow) -> tuple[str, str]:
    return (row.taxi, row.month or "")


def _source_detail(source: Extracted) -> dict[str, Any]:
    """What pg's ledger holds of the source: its rows (a bad row fails the whole file,
    so none is quarantined), its uncompressed size and the upstream version."""
    return {
        "source_rows": source.rows,
        "quarantined": 0,
        "source_bytes": source.uncompressed_bytes,
        "upstream": source.upstream.as_json(),
    }


_RECORDED = (
    *("checks", "source_rows", "quarantined", "source_bytes", "upstream", "worker"),
    *("md5", "crc32c", "generation"),
)


def _with_record(row: LedgerRow, data: dict[str, Any]) -> LedgerRow:
    """`row` with what a load record adds: the checks, the source's word, the upstream
    version (drift detection reads it), when and by whom."""
    from dataclasses import replace

    from taxi_cli.gcp import records

    detail = row.detail | {k: data[k] for k in _RECORDED if k in data}
    return replace(
        row,
        started=records.moment(data.get("started")) or row.started,
        finished=records.moment(data.get("finished")) or row.finished,
        detail=detail,
    )


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
        self.lake.location_of_dataset = lambda: self.warehouse().location
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
                location=None,
                create_dataset=self.options.create_dataset,
                migrate=self.options.migrate,
            )
        warehouse: Warehouse = self._local.client
        return warehouse

    def check(self) -> None:
        warehouse = self.warehouse()
        if not self.staged_by_job:
            self.lake.check()
        self._check_locations(warehouse)
        warehouse.ensure_ledger()

    def _check_locations(self, warehouse: Warehouse) -> None:
        """The bucket must be where the dataset can load from; its location is known only
        when the bucket was read (--create-bucket, or TAXI_GCS_CHECK_LOCATION=1)."""
        from taxi_cli.gcp.bq import locations_compatible

        bucket_location = self.lake.lake().location
        if bucket_location is None:
            log.debug(
                "the location of gs://%s was not checked against dataset %s (%s): that "
                "needs storage.buckets.get; set TAXI_GCS_CHECK_LOCATION=1 to check it",
                self.lake.bucket,
                warehouse.dataset,
                warehouse.location,
            )
            return
        if not locations_compatible(bucket_location, warehouse.location):
            raise ConfigError(
                f"bucket gs://{self.lake.bucket} is in {bucket_location} but dataset "
                f"{warehouse.dataset} is in {warehouse.location}: BigQuery loads only from a "
                "bucket in the dataset's location (or any bucket into US); use a bucket in "
                f"{warehouse.location} (--create-bucket makes one there) or another dataset"
            )

    def ledger(self, *, read_only: bool = False) -> Sequence[LedgerRow]:
        from taxi_cli.gcp.bq import read_ledger

        return latest_rows(
            read_ledger(self.cfg, project=self.project, dataset=self.dataset), self.name
        )

    def load(
        self, part: Partition, source: Extracted, action: Action, staged: Loaded | None = None
    ) -> Loaded:
        if staged is None:
            staged = self.lake.load(part, source, action)
        started = datetime.now(UTC)
        warehouse = self.warehouse()
        done = warehouse.load_month(
            part.taxi,
            part.month,
            staged.where,
            fmt=str(self.lake.fmt),
            filename=source.csv_name,
            expected_rows=source.rows,
        )
        record = self._record(part, source, "done", started)
        checks = staged.detail.get("checks")  # counted by the lake before its upload
        record |= {
            "checks": json.dumps(checks, sort_keys=True) if checks is not None else None,
            "rows": done.rows,
            "source_uri": staged.where,
            "table_id": done.destination,
            "job_id": done.job_id,
            "bytes_processed": done.bytes_processed,
            "bytes_billed": done.bytes_billed,
        }
        ledger_job = warehouse.append_ledger([record])
        stats = [*done.stats, ledger_job]
        detail: dict[str, Any] = {
            "source": staged.where,
            "partition": done.destination,
            "job_id": done.job_id,
            "bytes_processed": sum(s.bytes_processed or 0 for s in stats),
            "bytes_billed": sum(s.bytes_billed or 0 for s in stats),
            "jobs": [s.as_json() for s in stats],
        }
        return Loaded(
            self.name, part.taxi.name, part.month, done.rows, "replaced", done.table, detail
        )

    def _record(
        self, part: Partition, source: Extracted | None, status: str, started: datetime | None
    ) -> dict[str, Any]:
        return {
            "file": source.csv_name if source else part.csv_name,
            "taxi": part.taxi.name,
            "month": part.month,
            "status": status,
            "source_sha256": source.sha256 if source else None,
            "upstream_size": source.compressed_bytes if source else None,
            "upstream_etag": source.etag if source else None,
            "upstream_modified": source.last_modified if source else None,
            "source_rows": source.rows if source else None,
            "quarantined": 0 if source else None,  # a bad row fails the whole file
            "source_bytes": source.uncompressed_bytes if source else None,
            "started": started,
            "finished": datetime.now(UTC),
            "tool_version": __version__,
            "worker": self.options.worker,
        }

    def record_failure(self, part: Partition, error: str) -> None:
        record = self._record(part, None, "failed", None) | {"error": error[:2000]}
        self.warehouse().append_ledger([record])

    def audit(self) -> Audit:
        """The ledger table against a COUNT per filename of each trip table it names."""
        from taxi_cli.catalog import TAXIS

        entries = self.ledger(read_only=True)
        taxis = sorted({e.taxi for e in entries if e.taxi in TAXIS and e.month})
        return Audit(list(entries), self.warehouse().file_counts(taxis) if taxis else {})

    def record_run(self, run: RunRecord) -> None:
        """One row appended to `{dataset}.taxi_cli_runs` by a load job."""
        self.warehouse().append_run(run.as_json())

    def runs(self) -> list[RunRecord]:
        """The latest 100 runs, newest first (tabledata.list: no query job)."""
        from taxi_cli.gcp.bq import read_runs
        from taxi_cli.runs import RunRecord

        found = []
        for row in read_runs(self.cfg, project=self.project, dataset=self.dataset):
            try:
                found.append(RunRecord.from_json(row))
            except (KeyError, ValueError, TypeError):
                log.debug("not a run record: %s", row)
        found.sort(key=lambda r: r.started, reverse=True)
        return found[:100]

    def load_zones(self, source: Extracted, *, force: bool, staged: Loaded | None = None) -> Loaded:
        if staged is None:
            staged = self.lake.load_zones(source, force=force)
        done = self.warehouse().load_zones(staged.where, source.rows)
        detail = {
            "source": staged.where,
            "job_id": done.job_id,
            "bytes_processed": done.bytes_processed,
            "bytes_billed": done.bytes_billed,
            "jobs": [s.as_json() for s in done.stats],
        }
        return Loaded(self.name, "zones", None, done.rows, "replaced", done.table, detail)


def latest_rows(records: Sequence[dict[str, Any]], target: str) -> list[LedgerRow]:
    """The latest state of each (taxi, month) from append-only ledger rows.

    A failure after a load keeps the loaded file's sha256 and rows: the partition still
    holds that data (a failed job commits nothing).
    """
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        by_key.setdefault((str(record["taxi"]), str(record["month"])), []).append(record)
    out: list[LedgerRow] = []
    for (taxi, month), entries in sorted(by_key.items()):
        entries.sort(key=lambda r: _moment(r.get("finished")))
        last = entries[-1]
        done = [r for r in entries if r.get("status") == "done"]
        data = done[-1] if done else last
        out.append(
            LedgerRow(
                file=str(last.get("file") or ""),
                taxi=taxi,
                month=month,
                sha256=data.get("source_sha256") if done else None,
                rows=data.get("rows") if done else None,
                status=str(last.get("status")),
                error=last.get("error"),
                started=_moment_or_none(last.get("started")),
                finished=_moment_or_none(last.get("finished")),
                detail={
                    **{
                        k: data.get(k)
                        for k in (
                            "table_id",
                            "job_id",
                            "source_uri",
                            "bytes_processed",
                            "bytes_billed",
                            "worker",
                        )
                    },
                    # what `check` and drift detection read of any destination: the job's
                    # row count was checked against the source's before this row was
                    # written (rows older than those columns: the rows are the source's)
                    **(_source_of(data) if done else {}),
                    "upstream": {
                        "size": data.get("upstream_size"),
                        "etag": data.get("upstream_etag"),
                        "last_modified": data.get("upstream_modified"),
                    },
                },
                target=target,
            )
        )
    return out


def _source_of(data: dict[str, Any]) -> dict[str, Any]:
    source_rows = data.get("source_rows")
    found: dict[str, Any] = {
        "source_rows": source_rows if source_rows is not None else data.get("rows"),
        "quarantined": data.get("quarantined") or 0,
    }
    if data.get("source_bytes") is not None:
        found["source_bytes"] = data["source_bytes"]
    if data.get("checks"):
        try:
            found["checks"] = json.loads(str(data["checks"]))
        except ValueError:
            log.debug("unreadable checks in the ledger: %r", data["checks"])
    return found


def _moment_or_none(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _moment(value: Any) -> datetime:
    return _moment_or_none(value) or datetime.min.replace(tzinfo=UTC)
