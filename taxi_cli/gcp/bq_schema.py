"""BigQuery schemas of the trip tables and the SQL that computes `unique_row_id`.

Main table `{dataset}.{taxi}_tripdata`: `unique_row_id STRING, filename STRING`, then the
release's columns under their lowercase names (as in Postgres). Types keep the row id
identical to Postgres: ids STRING (as in the course), counts INT64, money and distance
FLOAT64, timestamps DATETIME (the TLC times are local wall-clock times without a zone,
like Postgres `timestamp`; Parquet writes them as such). Partitioned by the DATE of the
pickup time and clustered by the pickup location.

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

MAIN_TYPES = {
    Kind.ID: "STRING",
    Kind.COUNT: "INT64",
    Kind.TIMESTAMP: "DATETIME",
    Kind.MONEY: "FLOAT64",
    Kind.FLAG: "STRING",
    Kind.TEXT: "STRING",
}
# What a load job reads from each object format: Parquet ids are Int64 (see extract).
STAGING_TYPES = {
    "csv.gz": MAIN_TYPES,
    "parquet": {**MAIN_TYPES, Kind.ID: "INT64"},
}
LINEAGE = (("unique_row_id", "STRING"), ("filename", "STRING"))
# The columns a Parquet object carries before the release's (see taxi_cli.parquet).
PARQUET_LINEAGE = (*LINEAGE, ("file_month", "DATE"))
ZONES_TABLE = "taxi_zone_lookup"
ZONES_TYPES = ("INT64", "STRING", "STRING", "STRING")


_LEGACY = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "RECORD": "STRUCT"}


def std_type(name: str) -> str:
    """GoogleSQL's name of a column type (the API answers with the legacy names)."""
    return _LEGACY.get(name.upper(), name.upper())


def main_table_id(taxi: TaxiType) -> str:
    return f"{taxi.name}_tripdata"


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


def staging_schema(taxi: TaxiType, fmt: str) -> list[bigquery.SchemaField]:
    types = STAGING_TYPES[fmt]
    lineage = [_field(n, t) for n, t in PARQUET_LINEAGE] if fmt == "parquet" else []
    return lineage + [_field(c.sql_name, types[c.kind]) for c in taxi.columns]


def zones_schema() -> list[bigquery.SchemaField]:
    return [_field(c.sql_name, t) for c, t in zip(ZONES_COLUMNS, ZONES_TYPES, strict=True)]


def pickup_column(taxi: TaxiType) -> str:
    return taxi.pickup.lower()


def cluster_columns(taxi: TaxiType) -> list[str]:
    """The pickup location id (every taxi type has one)."""
    return [c.sql_name for c in taxi.columns if c.sql_name == "pulocationid"]


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


def row_id_sql(taxi: TaxiType, alias: str = "s") -> str:
    """`TO_HEX(MD5(CONCAT(...)))` over the taxi's hashed columns, in order."""
    parts = [render_sql(_column(taxi, n), f"{alias}.{n.lower()}") for n in taxi.hash_columns]
    return "TO_HEX(MD5(CONCAT(" + ", ".join(parts) + ")))"


def select_sql(taxi: TaxiType, fmt: str, alias: str = "s") -> list[str]:
    """The staging columns cast to the main table's types, in table order."""
    types = STAGING_TYPES[fmt]
    out = []
    for c in taxi.columns:
        ref = f"{alias}.{c.sql_name}"
        same = types[c.kind] == MAIN_TYPES[c.kind]
        out.append(ref if same else f"CAST({ref} AS {MAIN_TYPES[c.kind]}) AS {c.sql_name}")
    return out


_FILENAME = re.compile(r"^[A-Za-z0-9_.+-]{1,200}$")


def filename_literal(filename: str) -> str:
    """`filename` as a SQL string literal (it names a release file: a strict charset)."""
    if not _FILENAME.match(filename):
        raise DataError(f"refusing odd file name {filename!r} as the lineage value")
    return f"'{filename}'"


def replace_sql(taxi: TaxiType, fmt: str, main: str, staging: str, filename: str) -> str:
    """Replace the rows of `filename` in `main` by the staging rows, atomically.

    One multi-statement transaction: DELETE that file's rows, INSERT every staging row
    (in-file duplicates kept, as in the course), COMMIT -- all or nothing. A single
    `MERGE ... ON FALSE ... WHEN NOT MATCHED BY SOURCE AND filename = ... THEN DELETE`
    would do the same on BigQuery, but bqemulator runs it ~20x slower. The file name is
    inlined (validated) because bqemulator does not pass query parameters into scripts.
    """
    names = [n for n, _ in LINEAGE] + [c.sql_name for c in taxi.columns]
    literal = filename_literal(filename)
    source = ",\n       ".join(
        [f"{row_id_sql(taxi)} AS unique_row_id", f"{literal} AS filename", *select_sql(taxi, fmt)]
    )
    return (
        "BEGIN TRANSACTION;\n"
        f"DELETE FROM `{main}` WHERE filename = {literal};\n"
        f"INSERT INTO `{main}` ({', '.join(names)})\n"
        f"SELECT {source}\nFROM `{staging}` AS s;\n"
        "COMMIT TRANSACTION;"
    )
