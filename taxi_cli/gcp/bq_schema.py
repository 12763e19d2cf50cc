"""BigQuery schemas of the trip tables and the SQL that computes `unique_row_id`.

Main table `{dataset}.{taxi}_tripdata`, one partition per release file:
`unique_row_id STRING, filename STRING, file_month DATE` (the first day of the file's
month), then the release's columns under their lowercase names (as in Postgres): the
columns, order and types of the lake's Parquet object (`taxi_cli.parquet`), so a month
is one load job from that object. The object spells them as released (`VendorID`);
BigQuery column names are case-insensitive ("a column named Column1 is considered
identical to a column named column1", https://cloud.google.com/bigquery/docs/schemas
#column_names), which the load relies on; `make smoke-gcp` checks it on real BigQuery.
Types: ids and counts INT64, money and distance FLOAT64,
timestamps DATETIME (the TLC times are local wall-clock times without a zone, like
Postgres `timestamp`), flags and text STRING. Partitioned by `file_month` (MONTH) and
clustered by the pickup time and the pickup location.

The ledger table `{dataset}.taxi_cli_loads` (append-only, one row per load and per
failure) is the bq destination's state: see `LEDGER_FIELDS`.

`unique_row_id` renders the seven hashed columns as PostgreSQL renders their types as
text (see `taxi_cli.rowid`), NULL as '':

- ids, flags, text: `CAST(c AS STRING)`. From CSV these are the CSV text; from Parquet
  they are INT64, whose decimal form equals the release's text (it never writes `1.0`).
- timestamps: `FORMAT_DATETIME('%F %T', c)`, i.e. `YYYY-MM-DD HH:MM:SS` (the release has
  no fractional seconds).
- doubles: `CAST(c AS STRING)` with a trailing `.0` removed. BigQuery renders a FLOAT64
  as `%.15g`, widened to `%.17g` when that does not round-trip (ZetaSQL's
  RoundTripDoubleToString): `8`, `1.5`, `1e-05`, `1e+15` -- PostgreSQL's forms for every
  value with at most 15 significant digits, which includes every amount written with
  cents. Emulators backed by DuckDB print `8.0` (hence the `.0` strip) and switch to
  exponent form only from 1e16.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

from taxi_cli.catalog import ZONES_COLUMNS, Column, Kind, TaxiType
from taxi_cli.errors import DataError

if TYPE_CHECKING:
    from google.cloud import bigquery

# The main table's types: those of the Parquet object (ids are Int64 there).
MAIN_TYPES = {
    Kind.ID: "INT64",
    Kind.COUNT: "INT64",
    Kind.TIMESTAMP: "DATETIME",
    Kind.MONEY: "FLOAT64",
    Kind.FLAG: "STRING",
    Kind.TEXT: "STRING",
}
# What a load job reads from each object format. A csv.gz staging table keeps the ids
# as the release's text: the row id hashes that text, as Postgres does.
STAGING_TYPES = {
    "csv.gz": {**MAIN_TYPES, Kind.ID: "STRING"},
    "parquet": MAIN_TYPES,
}
LINEAGE = (("unique_row_id", "STRING"), ("filename", "STRING"), ("file_month", "DATE"))
# The columns a Parquet object carries before the release's (see taxi_cli.parquet).
PARQUET_LINEAGE = LINEAGE
PARTITION_COLUMN = "file_month"
ZONES_TABLE = "taxi_zone_lookup"
ZONES_TYPES = ("INT64", "STRING", "STRING", "STRING")
LEDGER_TABLE = "taxi_cli_loads"
LEDGER_FIELDS = (
    ("file", "STRING"),  # the release file (`filename` in the trip table)
    ("taxi", "STRING"),
    ("month", "STRING"),  # YYYY-MM
    ("status", "STRING"),  # done | failed
    ("source_sha256", "STRING"),  # of the verified release file
    ("rows", "INT64"),  # rows of the partition after the load (cross-checked)
    ("upstream_size", "INT64"),  # bytes of the release file
    ("upstream_etag", "STRING"),  # the release host's ETag, when known
    ("source_uri", "STRING"),  # the lake object the job read
    ("table_id", "STRING"),
    ("job_id", "STRING"),  # the job that wrote the partition
    ("bytes_processed", "INT64"),
    ("bytes_billed", "INT64"),
    ("started", "TIMESTAMP"),
    ("finished", "TIMESTAMP"),
    ("error", "STRING"),
    ("tool_version", "STRING"),
    ("worker", "STRING"),  # who loaded it: a backfill shard, host and pid
    # Added later (appended with ALLOW_FIELD_ADDITION, so older tables grow them):
    ("upstream_modified", "STRING"),  # the release asset's Last-Modified, when known
    ("source_rows", "INT64"),  # rows the source counted while verifying
    ("quarantined", "INT64"),  # rows set aside (none: a bad row fails the whole file)
    ("source_bytes", "INT64"),  # the release file's uncompressed size
    ("checks", "STRING"),  # the data checks (`taxi_cli.quality.Outcome`), JSON
)

RUNS_TABLE = "taxi_cli_runs"  # one row per load run (`taxi_cli.runs`), append-only
RUNS_FIELDS = (
    ("started", "TIMESTAMP"),
    ("finished", "TIMESTAMP"),
    ("command", "STRING"),  # secrets masked
    ("label", "STRING"),
    ("worker", "STRING"),
    ("done", "INT64"),
    ("skipped", "INT64"),
    ("failed", "INT64"),
    ("rows", "INT64"),
    ("seconds", "FLOAT64"),
    ("status", "STRING"),
    ("downloaded_bytes", "INT64"),
)


_LEGACY = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "RECORD": "STRUCT"}


def std_type(name: str) -> str:
    """GoogleSQL's name of a column type (the API answers with the legacy names)."""
    return _LEGACY.get(name.upper(), name.upper())


def main_table_id(taxi: TaxiType) -> str:
    return f"{taxi.name}_tripdata"


def partition_id(month: str) -> str:
    """`2020-04` -> `202004`: the MONTH partition's decorator suffix."""
    return month.replace("-", "")


def month_start(month: str) -> str:
    """`2020-04` -> `2020-04-01`, the file_month value of every row of that file."""
    if not re.fullmatch(r"\d{4}-\d{2}", month):
        raise DataError(f"bad month {month!r}; expected YYYY-MM")
    return f"{month}-01"


def staging_table_id(taxi: TaxiType, month: str) -> str:
    """The month's staging table for one run: two runs of the same month (two shells, two
    backfill workers) each get their own, so neither reads the other's half-loaded rows."""
    return f"{taxi.name}_tripdata_{month.replace('-', '_')}_staging_{uuid.uuid4().hex[:8]}"


def _field(name: str, type_: str) -> bigquery.SchemaField:
    from google.cloud import bigquery

    return bigquery.SchemaField(name, type_, mode="NULLABLE")


def main_schema(taxi: TaxiType) -> list[bigquery.SchemaField]:
    return [_field(n, t) for n, t in LINEAGE] + [
        _field(c.sql_name, MAIN_TYPES[c.kind]) for c in taxi.columns
    ]


# The csv.gz staging table's column names: a CSV load maps columns by position, and a
# name unlike the main table's keeps `CAST(src_x) AS X` unambiguous (bqemulator's
# DuckDB otherwise keeps `x` for the output name).
CSV_STAGING_PREFIX = "src_"


def csv_staging_schema(taxi: TaxiType) -> list[bigquery.SchemaField]:
    types = STAGING_TYPES["csv.gz"]
    return [_field(CSV_STAGING_PREFIX + c.sql_name, types[c.kind]) for c in taxi.columns]


def staging_schema(taxi: TaxiType, fmt: str) -> list[bigquery.SchemaField]:
    """A staging table of the release's columns, lowercase (Parquet: with lineage)."""
    types = STAGING_TYPES[fmt]
    lineage = [_field(n, t) for n, t in PARQUET_LINEAGE] if fmt == "parquet" else []
    return lineage + [_field(c.sql_name, types[c.kind]) for c in taxi.columns]


def zones_schema() -> list[bigquery.SchemaField]:
    return [_field(c.sql_name, t) for c, t in zip(ZONES_COLUMNS, ZONES_TYPES, strict=True)]


def ledger_schema() -> list[bigquery.SchemaField]:
    return [_field(n, t) for n, t in LEDGER_FIELDS]


def runs_schema() -> list[bigquery.SchemaField]:
    return [_field(n, t) for n, t in RUNS_FIELDS]


def pickup_column(taxi: TaxiType) -> str:
    return taxi.pickup.lower()


def cluster_columns(taxi: TaxiType) -> list[str]:
    """The pickup time, then the pickup location id (every taxi type has both)."""
    location = [c.sql_name for c in taxi.columns if c.sql_name == "pulocationid"]
    return [pickup_column(taxi), *location]


def _column(taxi: TaxiType, name: str) -> Column:
    return next(c for c in taxi.columns if c.name == name)


def render_sql(column: Column, ref: str) -> str:
    """SQL giving the text PostgreSQL would hash for `column` (NULL -> '')."""
    if column.kind is Kind.TIMESTAMP:
        text = f"FORMAT_DATETIME('%F %T', {ref})"
    elif column.kind is Kind.MONEY:
        text = f"REGEXP_REPLACE(CAST({ref} AS STRING), r'\\.0$', '')"
    else:
        text = f"CAST({ref} AS STRING)"
    return f"COALESCE({text}, '')"


def row_id_sql(taxi: TaxiType, alias: str = "s", prefix: str = "") -> str:
    """`TO_HEX(MD5(CONCAT(...)))` over the taxi's hashed columns, in order."""
    parts = [
        render_sql(_column(taxi, n), f"{alias}.{prefix}{n.lower()}") for n in taxi.hash_columns
    ]
    return "TO_HEX(MD5(CONCAT(" + ", ".join(parts) + ")))"


def select_sql(taxi: TaxiType, fmt: str, alias: str = "s", prefix: str = "") -> list[str]:
    """The staging columns cast to the main table's types and names, in table order."""
    types = STAGING_TYPES[fmt]
    out = []
    for c in taxi.columns:
        ref = f"{alias}.{prefix}{c.sql_name}"
        same = types[c.kind] == MAIN_TYPES[c.kind]
        value = ref if same else f"CAST({ref} AS {MAIN_TYPES[c.kind]})"
        out.append(f"{value} AS {c.sql_name}")
    return out


_FILENAME = re.compile(r"^[A-Za-z0-9_.+-]{1,200}$")


def filename_literal(filename: str) -> str:
    """`filename` as a SQL string literal (it names a release file: a strict charset)."""
    if not _FILENAME.match(filename):
        raise DataError(f"refusing odd file name {filename!r} as the lineage value")
    return f"'{filename}'"


def partition_select_sql(taxi: TaxiType, staging: str, filename: str, month: str) -> str:
    """The month's rows from a csv.gz staging table, in the main table's shape.

    A plain SELECT (no DML): the query job writes its result into the month's partition
    (`table$YYYYMM`, WRITE_TRUNCATE), which replaces that file's rows atomically. The file
    name and month are inlined (validated): bqemulator does not pass query parameters
    into every statement kind.
    """
    literal = filename_literal(filename)
    source = ",\n       ".join(
        [
            f"{row_id_sql(taxi, prefix=CSV_STAGING_PREFIX)} AS unique_row_id",
            f"{literal} AS filename",
            f"DATE '{month_start(month)}' AS {PARTITION_COLUMN}",
            *select_sql(taxi, "csv.gz", prefix=CSV_STAGING_PREFIX),
        ]
    )
    return f"SELECT {source}\nFROM `{staging}` AS s"


def partition_count_sql(main: str, month: str) -> str:
    """Rows in the month's partition (a filter on the partitioning column: one partition
    is read, and only its `file_month` values)."""
    return (
        f"SELECT COUNT(*) AS n FROM `{main}` WHERE {PARTITION_COLUMN} = DATE '{month_start(month)}'"
    )
