"""`load-bq`: load a month from its gs:// object into `{dataset}.{taxi}_tripdata`.

Per month: a load job (explicit schema, no autodetect) fills a per-month staging table
that expires on its own; its row count must equal the verified source's; then one MERGE
computes `unique_row_id` (same value as Postgres, see `bq_schema`) and replaces that
file's rows in the main table atomically. A rerun therefore leaves exactly one copy, and
a failure at any step leaves the main table as it was. The staging table is dropped at
the end, and expires anyway if the process dies first.
"""

from __future__ import annotations

import logging
import re
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
    is_retryable,
)
from taxi_cli.gcp import bq_schema, clients
from taxi_cli.retry import retrying

if TYPE_CHECKING:
    from google.cloud import bigquery

log = logging.getLogger("taxi_cli.bq")

STAGING_TTL = timedelta(hours=6)
_NAME = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
# https://cloud.google.com/bigquery/docs/error-messages: worth retrying as they are
TRANSIENT_REASONS = frozenset({"backendError", "internalError", "rateLimitExceeded"})
# A transaction that lost a race with another writer of the same table: BigQuery gives
# it no reason code of its own, only this message.
_ABORTED = re.compile(r"aborted due to concurrent update", re.I)


def check_dataset_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(f"bad dataset name {name!r}: letters, digits and underscores only")
    return name


@dataclass(frozen=True)
class TableLoad:
    """What the jobs of one table load did."""

    taxi: str
    month: str | None
    table: str
    source_uri: str
    rows: int  # rows the load job read (= rows of the file now in the table)
    inserted: int | None
    deleted: int | None  # rows of an earlier load of the same file that were replaced
    bytes_processed: int | None
    bytes_billed: int | None
    jobs: dict[str, str] = field(default_factory=dict)  # step -> job id


def job_error(exc: BaseException, job: Any, what: str, auth: clients.Auth) -> TaxiError:
    """`BigQuery <kind> job <id> failed: reason: message; ...` (no stack trace)."""
    from google.api_core import exceptions as gexc

    if job is None or not isinstance(exc, gexc.GoogleAPICallError):
        return clients.api_error(exc, what, auth)
    if isinstance(exc, gexc.Unauthorized | gexc.Forbidden):
        return clients.api_error(exc, what, auth)
    errors = list(getattr(job, "errors", None) or []) or list(getattr(exc, "errors", []) or [])
    reasons = []
    for err in errors[:3]:
        if isinstance(err, dict):
            msg = " ".join(str(err.get("message", "")).split())
            reasons.append(f"{err.get('reason', 'error')}: {msg[:300]}")
    detail = "; ".join(reasons) or " ".join(str(getattr(exc, "message", exc)).split())[:300]
    message = f"{what}: BigQuery job {job.job_id} failed: {detail}"
    kinds = {str(e.get("reason", "")) for e in errors if isinstance(e, dict)}
    if kinds & TRANSIENT_REASONS or _ABORTED.search(detail):
        return TransientError(message)
    return TaxiError(message)


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
    ) -> None:
        self.cfg = cfg
        self.dataset_id = check_dataset_name(dataset or cfg.bq_dataset)
        self.location = location or cfg.bq_location
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
            if found.location and found.location != self.location:
                # Jobs must run where the dataset lives, whatever --location said.
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
        """Create `{taxi}_tripdata` if missing; refuse one whose columns differ."""
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery

        table_id = self.table_id(bq_schema.main_table_id(taxi))
        schema = bq_schema.main_schema(taxi)
        try:
            table = self.client.get_table(table_id)
        except gexc.NotFound:
            table = bigquery.Table(table_id, schema=schema)
            table.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY, field=bq_schema.pickup_column(taxi)
            )
            table.clustering_fields = bq_schema.cluster_columns(taxi) or None
            table.description = f"NYC TLC {taxi.name} trips, loaded by taxi-cli"
            try:
                self.client.create_table(table, exists_ok=True)
            except Exception as exc:
                raise clients.api_error(exc, f"creating table {table_id}", self.auth) from exc
            return table_id
        except Exception as exc:
            raise clients.api_error(exc, f"reading table {table_id}", self.auth) from exc
        have = [(f.name.lower(), bq_schema.std_type(f.field_type)) for f in table.schema]
        want = [(f.name, bq_schema.std_type(f.field_type)) for f in schema]
        if have != want:
            raise ConfigError(
                f"table {table_id} exists with other columns than taxi-cli's {taxi.name} "
                "schema; drop or rename it, or load into another --dataset"
            )
        return table_id

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

    def _keep_expiring(self, table_id: str) -> None:
        """Re-assert the staging table's expiration (a truncating load may reset it)."""
        try:
            table = self.client.get_table(table_id)
            table.expires = datetime.now(UTC) + STAGING_TTL
            self.client.update_table(table, ["expires"])
        except Exception as exc:  # the explicit drop still removes it
            log.debug("could not set the expiration of %s: %s", table_id, exc)

    def _swap(self, sql: str, main: str, tag: str) -> Any:
        """Run the swap transaction, again when a concurrent writer of `main` aborted it.

        BigQuery cancels one of two transactions that mutate the same table at once (as
        parallel backfill workers do); the staging table is still there, so retrying is
        safe and the outcome is the same as a serial run.
        """

        def told(exc: BaseException, attempt: int, delay: float) -> None:
            log.warning("%s; retrying in %.1fs (attempt %d)", exc, delay, attempt + 1)

        job, _ = retrying(
            lambda: self._query(sql, {}, f"replacing rows in {main}", f"{tag}_replace_"),
            cfg=self.cfg,
            attempts=max(1, self.cfg.http_retries + 1),
            retryable=is_retryable,
            on_retry=told,
        )
        return job

    def drop(self, table_id: str) -> None:
        try:
            self.client.delete_table(table_id, not_found_ok=True)
        except Exception as exc:  # it expires on its own; do not mask the real outcome
            log.warning("could not drop %s (it expires by itself): %s", table_id, exc)

    # ---- jobs -----------------------------------------------------------------------

    def _load(
        self, uri: str, table_id: str, schema: list[bigquery.SchemaField], fmt: str, prefix: str
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
        job = None
        try:
            job = self.client.load_table_from_uri(
                uri, table_id, job_config=config, job_id_prefix=prefix
            )
            job.result()
        except Exception as exc:
            raise job_error(exc, job, f"loading {uri} into {table_id}", self.auth) from exc
        log.info("load job %s read %s rows from %s", job.job_id, job.output_rows, uri)
        return job

    def _query(self, sql: str, params: dict[str, str], what: str, prefix: str) -> Any:
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter(k, "STRING", v) for k, v in params.items()
            ]
        )
        job = None
        try:
            job = self.client.query(sql, job_config=config, job_id_prefix=prefix)
            job.result()
        except Exception as exc:
            raise job_error(exc, job, what, self.auth) from exc
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
        """Replace file `filename`'s rows in the main table by the rows of `uri`."""
        main = self.ensure_main(taxi)
        staging = self._fresh_staging(
            bq_schema.staging_table_id(taxi, month), bq_schema.staging_schema(taxi, fmt)
        )
        tag = f"taxi_cli_{taxi.name}_{month.replace('-', '_')}"
        try:
            load = self._load(
                uri, staging, bq_schema.staging_schema(taxi, fmt), fmt, f"{tag}_load_"
            )
            rows = int(load.output_rows or 0)
            if expected_rows is not None and rows != expected_rows:
                raise DataError(
                    f"load job {load.job_id} read {rows:,} rows from {uri}, but the verified "
                    f"file has {expected_rows:,}; {main} was not changed; rerun load-gcs "
                    "to replace the object"
                )
            self._keep_expiring(staging)
            swap = self._swap(bq_schema.replace_sql(taxi, fmt, main, staging, filename), main, tag)
        finally:
            self.drop(staging)
        inserted, deleted = self._dml_counts(swap, rows)
        log.info("%s: %s rows of %s in place (%s replaced)", main, inserted, filename, deleted)
        return TableLoad(
            taxi=taxi.name,
            month=month,
            table=main,
            source_uri=uri,
            rows=rows,
            inserted=inserted,
            deleted=deleted,
            bytes_processed=swap.total_bytes_processed,
            bytes_billed=swap.total_bytes_billed,
            jobs={"load": load.job_id, "replace": swap.job_id},
        )

    def _dml_counts(self, script: Any, rows: int) -> tuple[int, int | None]:
        """Rows inserted and deleted by the script's DML (its child jobs on BigQuery;
        an emulator without child jobs leaves `deleted` unknown)."""
        inserted, deleted = rows, None
        try:
            children = list(self.client.list_jobs(parent_job=script.job_id))
        except Exception as exc:  # statistics only: never fail a committed load for them
            log.debug("no child jobs of %s: %s", script.job_id, exc)
            children = []
        for child in children:
            affected = getattr(child, "num_dml_affected_rows", None)
            kind = getattr(child, "statement_type", None)
            if affected is not None and kind == "DELETE":
                deleted = int(affected)
            elif affected is not None and kind == "INSERT":
                inserted = int(affected)
        return inserted, deleted

    def load_zones(self, uri: str, expected_rows: int | None) -> TableLoad:
        """Replace `taxi_zone_lookup` with the CSV at `uri` (a load job is atomic)."""
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery

        table_id = self.table_id(bq_schema.ZONES_TABLE)
        schema = bq_schema.zones_schema()
        try:
            self.client.get_table(table_id)
        except gexc.NotFound:
            self.client.create_table(bigquery.Table(table_id, schema=schema), exists_ok=True)
        except Exception as exc:
            raise clients.api_error(exc, f"reading table {table_id}", self.auth) from exc
        job = self._load(uri, table_id, schema, "csv", "taxi_cli_zones_load_")
        rows = int(job.output_rows or 0)
        if expected_rows is not None and rows != expected_rows:
            raise DataError(
                f"load job {job.job_id} read {rows:,} zone rows from {uri}, expected "
                f"{expected_rows:,}; rerun `taxi-cli load-gcs zones`"
            )
        return TableLoad(
            taxi="zones",
            month=None,
            table=table_id,
            source_uri=uri,
            rows=rows,
            inserted=rows,
            deleted=None,
            bytes_processed=None,
            bytes_billed=None,
            jobs={"load": job.job_id},
        )
