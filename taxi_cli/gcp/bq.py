"""`load-bq`: load a month from its gs:// object into `{dataset}.{taxi}_tripdata`.

One partition per release file: the table is partitioned by `file_month` (MONTH), and a
month is written by ONE job into the partition decorator `{table}$YYYYMM` with
WRITE_TRUNCATE. That job replaces exactly that file's rows, atomically (a job commits
all or nothing), reads no other month, runs no DML (so it works in the BigQuery sandbox)
and never conflicts with another month's job (months load in parallel).

- Parquet object (the default): it already carries `unique_row_id`, `filename` and
  `file_month` (`taxi_cli.parquet`), so the job is a load job straight from the object
  (no staging table, no query; load jobs are free).
- csv.gz object: a load job into a per-run staging table that expires on its own (its
  row count must equal the verified source's before anything else happens), then one
  query job that computes `unique_row_id` (as Postgres does, see `bq_schema`) and writes
  its result into the decorator. The staging table is dropped at the end.

After the job, the partition's row count is read back and must equal the file's; the
ledger row (`taxi_cli_loads`, append-only, through a load job: no DML, no streaming) is
written only then. Jobs are retried on retryable errors (BigQuery's reason codes), each
attempt a new job id; every job's bytes processed and billed are logged and returned.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from taxi_cli.catalog import TaxiType
from taxi_cli.config import Settings
from taxi_cli.errors import (
    ConfigError,
    DataError,
    TaxiError,
    TransientError,
    UsageError,
)
from taxi_cli.gcp import bq_schema, clients
from taxi_cli.retry import retrying

if TYPE_CHECKING:
    from google.cloud import bigquery

log = logging.getLogger("taxi_cli.bq")

STAGING_TTL = timedelta(hours=6)
_NAME = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
# https://cloud.google.com/bigquery/docs/error-messages: worth retrying as they are
TRANSIENT_REASONS = frozenset(
    {
        "backendError",
        "internalError",
        "rateLimitExceeded",
        "jobBackendError",
        "jobInternalError",
        "jobRateLimitExceeded",
    }
)
# 403s that are quotas, not permissions (troubleshoot-quotas: "HTTP 403 Forbidden").
QUOTA_REASONS = frozenset({"rateLimitExceeded", "quotaExceeded"})
# A transaction that lost a race with another writer of the same table: BigQuery gives
# it no reason code of its own, only this message.
_ABORTED = re.compile(r"aborted due to concurrent update", re.I)
# Two workers opening the same taxi's table at once: one creates (or migrates) it.
_TABLES = threading.Lock()


def check_dataset_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(f"bad dataset name {name!r}: letters, digits and underscores only")
    return name


@dataclass(frozen=True)
class JobStats:
    """One BigQuery job of a load, as its statistics describe it."""

    step: str  # load | stage | write | count | ledger
    job_id: str
    bytes_processed: int | None
    bytes_billed: int | None

    def as_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "job_id": self.job_id,
            "bytes_processed": self.bytes_processed,
            "bytes_billed": self.bytes_billed,
        }


@dataclass(frozen=True)
class TableLoad:
    """What the jobs of one table load did."""

    taxi: str
    month: str | None
    table: str
    source_uri: str
    rows: int  # rows of the file now in the table (its partition, cross-checked)
    destination: str = ""  # the table, or `table$YYYYMM` for a trip month
    job_id: str = ""  # the job that wrote the data
    stats: tuple[JobStats, ...] = ()
    jobs: dict[str, str] = field(default_factory=dict)  # step -> job id

    @property
    def bytes_processed(self) -> int:
        return sum(s.bytes_processed or 0 for s in self.stats)

    @property
    def bytes_billed(self) -> int:
        return sum(s.bytes_billed or 0 for s in self.stats)


def job_error(exc: BaseException, job: Any, what: str, auth: clients.Auth) -> TaxiError:
    """`BigQuery <kind> job <id> failed: reason: message; ...` (no stack trace)."""
    from google.api_core import exceptions as gexc

    if job is None or not isinstance(exc, gexc.GoogleAPICallError):
        return _quota_or_api_error(exc, what, auth)
    errors = list(getattr(job, "errors", None) or []) or list(getattr(exc, "errors", []) or [])
    kinds = {str(e.get("reason", "")) for e in errors if isinstance(e, dict)}
    if isinstance(exc, gexc.Unauthorized | gexc.Forbidden) and not kinds & QUOTA_REASONS:
        return clients.api_error(exc, what, auth)
    reasons = []
    for err in errors[:3]:
        if isinstance(err, dict):
            msg = " ".join(str(err.get("message", "")).split())
            reasons.append(f"{err.get('reason', 'error')}: {msg[:300]}")
    detail = "; ".join(reasons) or " ".join(str(getattr(exc, "message", exc)).split())[:300]
    message = f"{what}: BigQuery job {job.job_id} failed: {detail}"
    if kinds & (TRANSIENT_REASONS | QUOTA_REASONS) or _ABORTED.search(detail):
        return TransientError(message)
    return TaxiError(message)


def _quota_or_api_error(exc: BaseException, what: str, auth: clients.Auth) -> TaxiError:
    """A 403 whose reason is a quota is worth a retry; any other goes to `api_error`."""
    errors = getattr(exc, "errors", None) or []
    kinds = {str(e.get("reason", "")) for e in errors if isinstance(e, dict)}
    if kinds & QUOTA_REASONS:
        return TransientError(f"{what}: {', '.join(sorted(kinds & QUOTA_REASONS))}")
    return clients.api_error(exc, what, auth)


def locations_compatible(bucket: str, dataset: str) -> bool:
    """Can a dataset in `dataset` load from a bucket in `bucket`?

    "If your dataset's location is set to a value other than the US multi-region, then
    the Cloud Storage bucket must be in the same region or contained in the same
    multi-region as the dataset" (https://cloud.google.com/bigquery/docs/batch-loading-data
    #data-locations). A region counts as inside a multi-region by its name (`europe-*` in
    EU, `us-*` in US).
    """
    b, d = bucket.upper(), dataset.upper()
    if b == d or d == "US":
        return True
    multi = {"EU": "EUROPE-", "US": "US-"}
    return b in multi and d.startswith(multi[b]) or d in multi and b.startswith(multi[d])


class Warehouse:
    """One BigQuery dataset, opened (and checked) once per command."""

    def __init__(
        self,
        cfg: Settings,
        *,
        project: str | None = None,
        dataset: str | None = None,
        location: str | None = None,
        create_dataset: bool = False,
        migrate: bool = False,
    ) -> None:
        self.cfg = cfg
        self.dataset_id = check_dataset_name(dataset or cfg.bq_dataset)
        self.location = location or cfg.bq_location
        # --location / TAXI_BQ_LOCATION given on purpose: a dataset elsewhere is an error.
        self.location_explicit = location is not None or cfg.source_of("bq_location") != "default"
        self.migrate = migrate
        self._ledger_ready = False
        self.auth = clients.bq_auth(cfg, project)
        if re.search(r"[`\s]", self.auth.project):
            raise UsageError(f"bad project id {self.auth.project!r}")
        self.client = clients.bq_client(self.auth, self.location)
        self.dataset = f"{self.auth.project}.{self.dataset_id}"
        self._open_dataset(create_dataset)

    def _open_dataset(self, create: bool) -> None:
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery

        what = f"dataset {self.dataset}"
        try:
            found = self.client.get_dataset(self.dataset, retry=clients.preflight_retry(self.cfg))
            if found.location and found.location.upper() != self.location.upper():
                if self.location_explicit:
                    raise ConfigError(
                        f"dataset {self.dataset} is in {found.location}, but --location "
                        f"(TAXI_BQ_LOCATION) says {self.location}; pass --location "
                        f"{found.location}, or use a dataset in {self.location}"
                    )
                # Jobs must run where the dataset lives.
                log.info("dataset %s is in %s", self.dataset, found.location)
                self.location = found.location
                self.client = clients.bq_client(self.auth, self.location)
            return
        except gexc.NotFound:
            if not create:
                raise ConfigError(
                    f"BigQuery dataset {self.dataset} does not exist; create it or pass "
                    "--create-dataset"
                ) from None
        except TaxiError:
            raise
        except Exception as exc:
            raise clients.api_error(exc, what, self.auth) from exc
        ds = bigquery.Dataset(self.dataset)
        ds.location = self.location
        try:
            log.info("creating dataset %s in %s", self.dataset, self.location)
            self.client.create_dataset(ds, exists_ok=True)
        except Exception as exc:
            raise clients.api_error(exc, f"creating {what}", self.auth) from exc

    def table_id(self, name: str) -> str:
        return f"{self.dataset}.{name}"

    # ---- tables ---------------------------------------------------------------------

    def ensure_main(self, taxi: TaxiType) -> str:
        """Create `{taxi}_tripdata` if missing; refuse (or `--migrate`) an old layout."""
        from google.api_core import exceptions as gexc

        table_id = self.table_id(bq_schema.main_table_id(taxi))
        with _TABLES:
            try:
                table = self.client.get_table(table_id)
            except gexc.NotFound:
                self._create_main(taxi, table_id)
                return table_id
            except Exception as exc:
                raise clients.api_error(exc, f"reading table {table_id}", self.auth) from exc
            if old_layout(table):
                if not self.migrate:
                    raise ConfigError(
                        f"table {table_id} has taxi-cli's old layout (partitioned by day of "
                        "pickup, no file_month column); nothing was changed. Rerun with "
                        "--migrate: it copies the table to "
                        f"{bq_schema.main_table_id(taxi)}_old_layout_<time>, creates the new "
                        "layout, and the months are then loaded again from the lake"
                    )
                self._migrate(taxi, table_id)
                return table_id
            _check_columns(table, taxi, table_id)
        return table_id

    def _create_main(self, taxi: TaxiType, table_id: str) -> None:
        from google.cloud import bigquery

        table = bigquery.Table(table_id, schema=bq_schema.main_schema(taxi))
        # https://cloud.google.com/bigquery/docs/partitioned-tables#date_timestamp_partitioned_tables
        table.time_partitioning = bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.MONTH, field=bq_schema.PARTITION_COLUMN
        )
        table.clustering_fields = bq_schema.cluster_columns(taxi)
        table.description = (
            f"NYC TLC {taxi.name} trips, one file_month partition per release file; "
            "loaded by taxi-cli"
        )
        try:
            self.client.create_table(table, exists_ok=True)
        except Exception as exc:
            raise clients.api_error(exc, f"creating table {table_id}", self.auth) from exc

    def _migrate(self, taxi: TaxiType, table_id: str) -> None:
        """Keep the old table under a new name (a copy job: free, atomic), then create
        the new layout in its place. Nothing is dropped before its copy exists."""
        from google.cloud import bigquery

        stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
        backup = f"{table_id}_old_layout_{stamp}"
        config = bigquery.CopyJobConfig(
            write_disposition=bigquery.WriteDisposition.WRITE_EMPTY,
            create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
        )
        what = f"copying {table_id} to {backup}"
        job = self._run(
            "migrate",
            lambda: self.client.copy_table(
                table_id, backup, job_config=config, job_id_prefix="taxi_cli_migrate_"
            ),
            what,
        )
        del job
        try:
            self.client.delete_table(table_id)
        except Exception as exc:
            raise clients.api_error(exc, f"replacing {table_id}", self.auth) from exc
        log.warning(
            "migrated %s: the old table is kept as %s; load the months again "
            "(e.g. `taxi-cli backfill %s --catch-up --target bq`)",
            table_id,
            backup,
            taxi.name,
        )
        self._create_main(taxi, table_id)

    def _fresh_staging(self, name: str, schema: list[bigquery.SchemaField]) -> str:
        from google.cloud import bigquery

        table_id = self.table_id(name)
        table = bigquery.Table(table_id, schema=schema)
        table.expires = datetime.now(UTC) + STAGING_TTL
        table.description = "taxi-cli staging table; dropped after the load, else expires"
        try:
            self.client.delete_table(table_id, not_found_ok=True)
            self.client.create_table(table)
        except Exception as exc:
            raise clients.api_error(exc, f"creating {table_id}", self.auth) from exc
        return table_id

    def drop(self, table_id: str) -> None:
        try:
            self.client.delete_table(table_id, not_found_ok=True)
        except Exception as exc:  # it expires on its own; do not mask the real outcome
            log.warning("could not drop %s (it expires by itself): %s", table_id, exc)

    # ---- jobs -----------------------------------------------------------------------

    def _run(self, step: str, start: Callable[[], Any], what: str) -> Any:
        """Start a job and wait for it; a retryable failure starts it again (new id).

        Safe: every job here writes with WRITE_TRUNCATE (or appends a ledger row that
        was not written, since the failed job committed nothing).
        """

        def once() -> Any:
            job = None
            try:
                job = start()
                job.result()
            except Exception as exc:
                raise job_error(exc, job, what, self.auth) from exc
            return job

        def told(exc: BaseException, attempt: int, delay: float) -> None:
            log.warning("%s; retrying in %.1fs (attempt %d)", exc, delay, attempt + 1)

        job, _ = retrying(
            once,
            cfg=self.cfg,
            attempts=max(1, self.cfg.http_retries + 1),
            retryable=lambda exc: isinstance(exc, TransientError),
            on_retry=told,
        )
        return job

    def _load(
        self,
        uri: str,
        destination: str,
        schema: list[bigquery.SchemaField],
        fmt: str,
        prefix: str,
    ) -> bigquery.LoadJob:
        from google.cloud import bigquery

        config = bigquery.LoadJobConfig(
            schema=schema,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
            autodetect=False,
        )
        if fmt == "parquet":
            config.source_format = bigquery.SourceFormat.PARQUET
        else:
            config.source_format = bigquery.SourceFormat.CSV
            config.skip_leading_rows = 1
            config.allow_jagged_rows = False
            config.allow_quoted_newlines = False
        job: bigquery.LoadJob = self._run(
            "load",
            lambda: self.client.load_table_from_uri(
                uri, destination, job_config=config, job_id_prefix=prefix
            ),
            f"loading {uri} into {destination}",
        )
        log.info(
            "load job %s read %s rows (%s bytes) from %s into %s",
            job.job_id,
            job.output_rows,
            job.input_file_bytes,
            uri,
            destination,
        )
        return job

    def _query(
        self, sql: str, what: str, prefix: str, *, destination: str | None = None
    ) -> bigquery.QueryJob:
        from google.cloud import bigquery

        # A runaway query fails instead of billing (the dbt profile has the same cap).
        config = bigquery.QueryJobConfig(maximum_bytes_billed=self.cfg.bq_max_bytes_billed or None)
        if destination is not None:
            config.destination = destination
            config.write_disposition = bigquery.WriteDisposition.WRITE_TRUNCATE
            config.create_disposition = bigquery.CreateDisposition.CREATE_NEVER
        job: bigquery.QueryJob = self._run(
            "query",
            lambda: self.client.query(sql, job_config=config, job_id_prefix=prefix),
            what,
        )
        log.info(
            "query job %s: %s bytes processed, %s bytes billed",
            job.job_id,
            job.total_bytes_processed,
            job.total_bytes_billed,
        )
        return job

    # ---- loads ----------------------------------------------------------------------

    def load_month(
        self,
        taxi: TaxiType,
        month: str,
        uri: str,
        *,
        fmt: str,
        filename: str,
        expected_rows: int | None,
    ) -> TableLoad:
        """Replace file `filename`'s rows (the month's partition) by the rows of `uri`."""
        main = self.ensure_main(taxi)
        partition = f"{main}${bq_schema.partition_id(month)}"
        tag = f"taxi_cli_{taxi.name}_{month.replace('-', '_')}"
        stats: list[JobStats] = []
        if fmt == "parquet":
            job = self._load(uri, partition, bq_schema.main_schema(taxi), fmt, f"{tag}_load_")
            stats.append(_load_stats("load", job))
            written = job
        else:
            written = self._csv_month(taxi, month, uri, partition, filename, expected_rows, stats)
        rows = self._partition_rows(main, month, tag, stats)
        if expected_rows is not None and rows != expected_rows:
            raise DataError(
                f"{partition} holds {rows:,} rows after job {written.job_id}, but the "
                f"verified file {filename} has {expected_rows:,}; rerun `taxi-cli load-gcs "
                f"{taxi.name} {month} --force`, then `load-bq ... --force`"
            )
        log.info("%s: %s rows of %s in place", partition, f"{rows:,}", filename)
        return TableLoad(
            taxi=taxi.name,
            month=month,
            table=main,
            source_uri=uri,
            rows=rows,
            destination=partition,
            job_id=written.job_id,
            stats=tuple(stats),
            jobs={s.step: s.job_id for s in stats},
        )

    def _csv_month(
        self,
        taxi: TaxiType,
        month: str,
        uri: str,
        partition: str,
        filename: str,
        expected_rows: int | None,
        stats: list[JobStats],
    ) -> Any:
        """csv.gz: stage (checked), then one query job writes the partition."""
        schema = bq_schema.csv_staging_schema(taxi)
        staging = self._fresh_staging(bq_schema.staging_table_id(taxi, month), schema)
        tag = f"taxi_cli_{taxi.name}_{month.replace('-', '_')}"
        try:
            load = self._load(uri, staging, schema, "csv.gz", f"{tag}_stage_")
            stats.append(_load_stats("stage", load))
            rows = int(load.output_rows or 0)
            if expected_rows is not None and rows != expected_rows:
                raise DataError(
                    f"load job {load.job_id} read {rows:,} rows from {uri}, but the verified "
                    f"file has {expected_rows:,}; {partition} was not changed; rerun "
                    "load-gcs to replace the object"
                )
            sql = bq_schema.partition_select_sql(taxi, staging, filename, month)
            write = self._query(sql, f"writing {partition}", f"{tag}_write_", destination=partition)
            stats.append(_query_stats("write", write))
        finally:
            self.drop(staging)
        return write

    def _partition_rows(self, main: str, month: str, tag: str, stats: list[JobStats]) -> int:
        job = self._query(
            bq_schema.partition_count_sql(main, month),
            f"counting the rows of {main} {month}",
            f"{tag}_count_",
        )
        stats.append(_query_stats("count", job))
        [(count,)] = [tuple(row.values()) for row in job.result()]
        return int(count)

    def load_zones(self, uri: str, expected_rows: int | None) -> TableLoad:
        """Replace `taxi_zone_lookup` with the CSV at `uri` (a load job is atomic)."""
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery

        table_id = self.table_id(bq_schema.ZONES_TABLE)
        schema = bq_schema.zones_schema()
        try:
            self.client.get_table(table_id)
        except gexc.NotFound:
            try:
                self.client.create_table(bigquery.Table(table_id, schema=schema), exists_ok=True)
            except Exception as exc:
                raise clients.api_error(exc, f"creating table {table_id}", self.auth) from exc
        except Exception as exc:
            raise clients.api_error(exc, f"reading table {table_id}", self.auth) from exc
        job = self._load(uri, table_id, schema, "csv", "taxi_cli_zones_load_")
        rows = int(job.output_rows or 0)
        if expected_rows is not None and rows != expected_rows:
            raise DataError(
                f"load job {job.job_id} read {rows:,} zone rows from {uri}, expected "
                f"{expected_rows:,}; rerun `taxi-cli load-gcs zones`"
            )
        stats = (_load_stats("load", job),)
        return TableLoad(
            taxi="zones",
            month=None,
            table=table_id,
            source_uri=uri,
            rows=rows,
            destination=table_id,
            job_id=job.job_id,
            stats=stats,
            jobs={"load": job.job_id},
        )

    # ---- the ledger table -------------------------------------------------------------

    def ensure_ledger(self) -> str:
        from google.cloud import bigquery

        table_id = self.table_id(bq_schema.LEDGER_TABLE)
        if self._ledger_ready:
            return table_id
        table = bigquery.Table(table_id, schema=bq_schema.ledger_schema())
        table.description = "taxi-cli: one row per load and per failure (append-only)"
        self._ensure_table(table)
        self._ledger_ready = True
        return table_id

    def _ensure_table(self, table: bigquery.Table) -> None:
        """Create `table` if missing; one made by an older taxi-cli gains the columns
        added since (NULLABLE, at the end: tables.patch, a free metadata change,
        https://cloud.google.com/bigquery/docs/managing-table-schemas#add_a_nullable_column)."""
        try:
            found = self.client.create_table(table, exists_ok=True)
            have = {f.name for f in found.schema}
            missing = [f for f in table.schema if f.name not in have]
            if missing:
                log.info("adding %s to %s", ", ".join(f.name for f in missing), table.table_id)
                found.schema = [*found.schema, *missing]
                self.client.update_table(found, ["schema"])
        except Exception as exc:
            raise clients.api_error(exc, f"creating table {table.table_id}", self.auth) from exc

    def append_ledger(self, records: Sequence[dict[str, Any]]) -> JobStats:
        """Append ledger rows with a load job (WRITE_APPEND): no DML, no streaming, both
        refused in the sandbox (https://cloud.google.com/bigquery/docs/sandbox#limits)."""
        return self._append(self.ensure_ledger(), bq_schema.ledger_schema(), records, "ledger")

    def _append(
        self,
        table_id: str,
        schema: list[bigquery.SchemaField],
        records: Sequence[dict[str, Any]],
        step: str,
    ) -> JobStats:
        from google.cloud import bigquery

        config = bigquery.LoadJobConfig(
            schema=schema,
            source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
        )
        rows = [_json_safe(r) for r in records]
        job = self._run(
            step,
            lambda: self.client.load_table_from_json(
                rows, table_id, job_config=config, job_id_prefix=f"taxi_cli_{step}_"
            ),
            f"recording the {'run' if step == 'runs' else 'load'} in {table_id}",
        )
        return _load_stats(step, job)

    def append_run(self, record: dict[str, Any]) -> JobStats:
        """One row into `{dataset}.taxi_cli_runs`, made if missing (a load job too)."""
        from google.cloud import bigquery

        table_id = self.table_id(bq_schema.RUNS_TABLE)
        table = bigquery.Table(table_id, schema=bq_schema.runs_schema())
        table.description = "taxi-cli: one row per load run (append-only)"
        self._ensure_table(table)
        return self._append(table_id, bq_schema.runs_schema(), [record], "runs")

    def file_counts(self, taxis: Sequence[str]) -> dict[str, int]:
        """filename -> rows in each taxi's trip table now: one COUNT per table (it reads
        the `filename` column only; capped by `bq_max_bytes_billed`)."""
        from google.api_core import exceptions as gexc

        counts: dict[str, int] = {}
        for taxi in taxis:
            table = self.table_id(f"{taxi}_tripdata")
            try:
                self.client.get_table(table)
            except gexc.NotFound:
                continue  # nothing of it is there
            except Exception as exc:
                raise clients.api_error(exc, f"reading table {table}", self.auth) from exc
            job = self._query(
                f"SELECT filename, COUNT(*) AS n FROM `{table}` GROUP BY filename",
                f"counting the rows per file of {table}",
                f"taxi_cli_{taxi}_check_",
            )
            for row in job.result():
                counts[str(row["filename"])] = int(row["n"])
        return counts


def old_layout(table: Any) -> bool:
    """A trip table from before file_month partitioning (DAY on pickup, no file_month)."""
    names = {f.name.lower() for f in table.schema}
    tp = table.time_partitioning
    if bq_schema.PARTITION_COLUMN not in names:
        return True
    return (
        tp is None
        or (tp.field or "").lower() != bq_schema.PARTITION_COLUMN
        or (str(tp.type_).upper() != "MONTH")
    )


def _check_columns(table: Any, taxi: TaxiType, table_id: str) -> None:
    have = [(f.name.lower(), bq_schema.std_type(f.field_type)) for f in table.schema]
    want = [(f.name.lower(), bq_schema.std_type(f.field_type)) for f in bq_schema.main_schema(taxi)]
    if have != want:
        raise ConfigError(
            f"table {table_id} exists with other columns than taxi-cli's {taxi.name} "
            "schema; drop or rename it, or load into another --dataset"
        )


def _load_stats(step: str, job: Any) -> JobStats:
    # Batch load jobs are not billed: "Free using the shared slot pool"
    # (https://cloud.google.com/bigquery/pricing#data_ingestion_pricing).
    read = job.input_file_bytes
    return JobStats(step, job.job_id, int(read) if read is not None else None, 0)


def _query_stats(step: str, job: Any) -> JobStats:
    processed, billed = job.total_bytes_processed, job.total_bytes_billed
    return JobStats(
        step,
        job.job_id,
        int(processed) if processed is not None else None,
        int(billed) if billed is not None else None,
    )


def _json_safe(record: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        out[key] = value.isoformat() if isinstance(value, datetime) else value
    return json.loads(json.dumps(out, default=str))  # type: ignore[no-any-return]


def read_ledger(
    cfg: Settings, *, project: str | None = None, dataset: str | None = None
) -> list[dict[str, Any]]:
    """Every row of `{dataset}.taxi_cli_loads`, read with tabledata.list (free, no query
    job); a missing dataset or table is an empty ledger, and nothing is created."""
    return _read_state(cfg, project, dataset, bq_schema.LEDGER_TABLE, bq_schema.ledger_schema())


def read_runs(
    cfg: Settings, *, project: str | None = None, dataset: str | None = None
) -> list[dict[str, Any]]:
    """Every row of `{dataset}.taxi_cli_runs` (tabledata.list: free); none when missing."""
    return _read_state(cfg, project, dataset, bq_schema.RUNS_TABLE, bq_schema.runs_schema())


def _read_state(
    cfg: Settings,
    project: str | None,
    dataset: str | None,
    table: str,
    schema: list[bigquery.SchemaField],
) -> list[dict[str, Any]]:
    auth = clients.bq_auth(cfg, project)
    client = clients.bq_client(auth, cfg.bq_location)
    name = check_dataset_name(dataset or cfg.bq_dataset)
    return _read_table(client, auth, f"{auth.project}.{name}.{table}", schema)


def _read_table(
    client: Any, auth: clients.Auth, table_id: str, schema: list[bigquery.SchemaField]
) -> list[dict[str, Any]]:
    from google.api_core import exceptions as gexc

    try:
        # tables.get first (free): a table from an older taxi-cli lacks the newer columns,
        # and asking tabledata.list for a column a table lacks is an error
        have = {f.name for f in client.get_table(table_id).schema}
        fields = [f for f in schema if f.name in have]
        rows = client.list_rows(table_id, selected_fields=fields)
        return [dict(row.items()) for row in rows]
    except gexc.NotFound:
        return []
    except Exception as exc:
        raise clients.api_error(exc, f"reading {table_id}", auth) from exc
