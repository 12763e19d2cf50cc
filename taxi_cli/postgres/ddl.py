"""Table definitions, composed with psycopg.sql (identifiers are never pasted as text).

Trip tables have the course's columns (lowercase names, `unique_row_id` and `filename`
first) so dbt models and homework queries work unchanged. The main table created here is
LIST-partitioned by `filename`: one partition per source file, which makes replacing a
file's rows an O(1) swap inside one transaction. An existing plain (course) table is
used as it is.
"""

from __future__ import annotations

import hashlib
import re

from psycopg import sql

from taxi_cli.catalog import ZONES_COLUMNS, Column, TaxiType
from taxi_cli.errors import UsageError

LEDGER = "taxi_cli_loads"
REJECTS = "taxi_cli_rejects"
ZONES = "taxi_zone_lookup"
_SCHEMA = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")


def check_schema(name: str) -> str:
    """Refuse schema names that need quoting (they are quoted anyway, but a user who
    typed `x"; drop ...` wants an error, not a schema of that name)."""
    if not _SCHEMA.match(name):
        raise UsageError(
            f"invalid schema name {name!r}: use letters, digits and _ "
            "(at most 63, not starting with a digit)"
        )
    return name


def table(taxi: TaxiType) -> str:
    return f"{taxi.name}_tripdata"


def partition_name(taxi: TaxiType, csv_name: str) -> str:
    """`green_tripdata_2020-04.csv` -> `green_tripdata_2020_04` (stable, <= 63 bytes)."""
    stem = re.sub(r"[^a-z0-9_]", "_", csv_name.lower().removesuffix(".csv"))
    if not stem.startswith(table(taxi)):
        stem = f"{table(taxi)}__{stem}"
    if len(stem) > 50:
        stem = stem[:40] + "_" + hashlib.md5(csv_name.encode()).hexdigest()[:8]
    return stem


def ident(schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def _column_defs(columns: tuple[Column, ...]) -> list[sql.Composable]:
    return [
        sql.SQL("{} {}").format(sql.Identifier(c.sql_name), sql.SQL(c.pg_type)) for c in columns
    ]


def data_columns(taxi: TaxiType) -> list[str]:
    return [c.sql_name for c in taxi.columns]


def create_parent(schema: str, taxi: TaxiType) -> sql.Composed:
    defs = [sql.SQL("unique_row_id text"), sql.SQL("filename text"), *_column_defs(taxi.columns)]
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}) PARTITION BY LIST (filename)").format(
        ident(schema, table(taxi)), sql.SQL(", ").join(defs)
    )


def create_file_table(
    schema: str | None, name: str, taxi: TaxiType, csv_name: str, *, temp: bool = False
) -> sql.Composed:
    """A table for one file's rows: `filename` defaults to the file and is checked to be
    it, so COPY need not send it and ATTACH PARTITION can skip its validation scan."""
    defs = [
        sql.SQL("unique_row_id text"),
        sql.SQL("filename text NOT NULL DEFAULT {} CHECK (filename = {})").format(
            sql.Literal(csv_name), sql.Literal(csv_name)
        ),
        *_column_defs(taxi.columns),
    ]
    target = sql.Identifier(name) if schema is None else ident(schema, name)
    kind = sql.SQL("TEMP TABLE") if temp else sql.SQL("TABLE")
    tail = sql.SQL(" ON COMMIT DROP") if temp else sql.SQL("")
    return sql.SQL("CREATE {} {} ({}){}").format(kind, target, sql.SQL(", ").join(defs), tail)


# A big file's partition is split in two halves by row id, so two connections (two
# server backends) COPY it at once: ids below SPLIT_AT (in "C" order) and the rest. md5
# hex is uniform, so each half holds about half of the rows.
SPLIT_AT = "8"
_HALF_CHECK = "taxi_cli_half"


def create_split_file_table(schema: str, name: str, taxi: TaxiType, csv_name: str) -> sql.Composed:
    """A file's table in two halves (`create_half`, `attach_half`)."""
    defs = [
        sql.SQL("unique_row_id text"),
        sql.SQL("filename text NOT NULL DEFAULT {}").format(sql.Literal(csv_name)),
        *_column_defs(taxi.columns),
    ]
    return sql.SQL('CREATE TABLE {} ({}) PARTITION BY RANGE (unique_row_id COLLATE "C")').format(
        ident(schema, name), sql.SQL(", ").join(defs)
    )


def create_half(
    schema: str, name: str, taxi: TaxiType, csv_name: str, *, upper: bool
) -> sql.Composed:
    """One half of a split file table, made apart (the upper one by the second
    connection, which commits it before the load does) and attached after its COPY: one
    CHECK per row, which also lets `attach_half` (and the file's ATTACH to the main
    table) skip the validation scan. A partition COPYed into directly would check its
    partition bound per row as well."""
    half = sql.SQL('unique_row_id COLLATE "C" {} {}').format(
        sql.SQL(">=" if upper else "<"), sql.Literal(SPLIT_AT)
    )
    defs = [
        sql.SQL("unique_row_id text NOT NULL"),
        sql.SQL("filename text NOT NULL DEFAULT {}").format(sql.Literal(csv_name)),
        *_column_defs(taxi.columns),
        sql.SQL("CONSTRAINT {} CHECK (filename = {} AND {})").format(
            sql.Identifier(_HALF_CHECK), sql.Literal(csv_name), half
        ),
    ]
    return sql.SQL("CREATE TABLE {} ({})").format(ident(schema, name), sql.SQL(", ").join(defs))


def attach_half(schema: str, parent: str, name: str, *, upper: bool) -> sql.Composed:
    bounds = "FROM ({}) TO (MAXVALUE)" if upper else "FROM (MINVALUE) TO ({})"
    return sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES " + bounds).format(
        ident(schema, parent), ident(schema, name), sql.Literal(SPLIT_AT)
    )


def copy_in(target: sql.Composable, columns: list[str], *, freeze: bool) -> sql.Composed:
    opts = "FORMAT binary, FREEZE true" if freeze else "FORMAT binary"
    return sql.SQL("COPY {} ({}) FROM STDIN ({})").format(
        target, sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(opts)
    )


def create_ledger(schema: str) -> sql.Composed:
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} ("
        "file text PRIMARY KEY, taxi text NOT NULL, month text, sha256 text, rows bigint, "
        "mode text, started timestamptz, finished timestamptz, "
        "status text NOT NULL CHECK (status IN ('done', 'failed')), error text, worker text)"
    ).format(ident(schema, LEDGER))


def migrate_ledger(schema: str) -> sql.Composed:
    """Columns added since the first release (IF NOT EXISTS: idempotent, forward only)."""
    added = ", ".join(
        f"ADD COLUMN IF NOT EXISTS {name} {kind}"
        for name, kind in (("worker", "text"), *RECONCILE_COLUMNS)
    )
    return sql.SQL("ALTER TABLE {} " + added).format(ident(schema, LEDGER))


# issue 13: what a load reconciles, per file (see taxi_cli.postgres.reconcile)
RECONCILE_COLUMNS = (
    ("source_rows", "bigint"),  # data rows counted in the release file while verifying it
    ("written", "bigint"),  # rows this load wrote
    ("quarantined", "bigint"),  # rows it put in taxi_cli_rejects instead
    ("source_bytes", "bigint"),  # the file uncompressed
    ("upstream_size", "bigint"),  # the release asset's version: size, ETag, Last-Modified
    ("upstream_etag", "text"),
    ("upstream_modified", "text"),
    ("checks", "jsonb"),  # the data checks' counts and verdict
)


def create_rejects(schema: str) -> sql.Composed:
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} ("
        "file text NOT NULL, line bigint NOT NULL, reason text NOT NULL, raw text, "
        "recorded timestamptz NOT NULL DEFAULT now())"
    ).format(ident(schema, REJECTS))


def create_zones(schema: str) -> sql.Composed:
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
        ident(schema, ZONES), sql.SQL(", ").join(_column_defs(ZONES_COLUMNS))
    )


def lock_key(schema: str, name: str) -> int:
    """A signed 64-bit advisory lock key for (schema, name)."""
    digest = hashlib.sha256(f"taxi-cli\0{schema}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
