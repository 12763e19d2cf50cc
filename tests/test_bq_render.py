"""The row-id SQL renders every real value as PostgreSQL (and `taxi_cli.rowid`) does."""

from __future__ import annotations

import csv
import gzip
import re
import uuid

import pytest

from taxi_cli import rowid
from taxi_cli.catalog import GREEN, YELLOW, Column, Kind
from taxi_cli.gcp import bq_schema
from taxi_cli.rowid import hash_plan
from tests.conftest import SHARED_DATA
from tests.fixtures_gcp import Gcp

REAL = SHARED_DATA / "real"


def _distinct(kind: Kind) -> list[str]:
    """Every distinct non-empty text of `kind` columns in the real green and yellow files."""
    values: set[str] = set()
    sources = [
        (GREEN, REAL / "green_tripdata_2020-04.csv.gz"),
        (YELLOW, REAL / "yellow_tripdata_2021-01.csv"),
    ]
    for taxi, path in sources:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            cols = [i for i, c in enumerate(taxi.columns) if c.kind is kind]
            for row in reader:
                if len(row) == len(header):
                    values.update(row[i] for i in cols if row[i])
    return sorted(values)


def _render_in_bigquery(gcp: Gcp, kind: Kind, texts: list[str]) -> dict[str, str]:
    """Load the texts as a STRING column (a load job, fast), then render them in SQL."""
    from google.cloud import bigquery

    client = gcp.bigquery()
    client.create_dataset(f"{gcp.project}.{gcp.dataset}", exists_ok=True)
    name = f"values_{kind.value}_{uuid.uuid4().hex[:8]}"
    blob = gcp.storage().bucket(gcp.bucket).blob(f"{name}.csv")
    blob.upload_from_string("t\n" + "\n".join(texts) + "\n")
    config = bigquery.LoadJobConfig(
        source_format="CSV",
        skip_leading_rows=1,
        schema=[bigquery.SchemaField("t", "STRING")],
    )
    table = f"{gcp.project}.{gcp.dataset}.{name}"
    client.load_table_from_uri(f"gs://{gcp.bucket}/{name}.csv", table, job_config=config).result()
    cast = {Kind.MONEY: "FLOAT64", Kind.TIMESTAMP: "DATETIME"}[kind]
    expr = bq_schema.render_sql(Column("v", kind), f"CAST(t AS {cast})")
    rows = gcp.query(f"SELECT t, {expr} FROM `{table}`")
    return {t: r for t, r in rows}


@pytest.mark.integration
@pytest.mark.parametrize("kind", [Kind.MONEY, Kind.TIMESTAMP])
def test_every_real_value_renders_like_postgres(gcp: Gcp, kind: Kind) -> None:
    texts = _distinct(kind)
    assert len(texts) > 1000  # amounts, distances and timestamps of two real months
    got = _render_in_bigquery(gcp, kind, texts)
    want = {t: rowid.render(kind, t) for t in texts}
    assert {t: got[t] for t in texts if got[t] != want[t]} == {}


@pytest.mark.integration
def test_small_and_null_values_render_like_postgres(gcp: Gcp) -> None:
    # Exponent form below 1e-4, a negative zero, and NULL as ''.
    texts = ["0.00001", "0.0001", "-0", "-0.00", "0.1", "100", "1.10"]
    got = _render_in_bigquery(gcp, Kind.MONEY, texts)
    assert got == {t: rowid.pg_float_text(t) for t in texts}
    expr = bq_schema.render_sql(Column("v", Kind.MONEY), "CAST(NULL AS FLOAT64)")
    assert gcp.query(f"SELECT {expr}") == [("",)]


def test_row_id_sql_hashes_the_catalogue_columns_in_order() -> None:
    sql = bq_schema.row_id_sql(GREEN)
    assert re.findall(r"\bs\.(\w+)", sql) == [n.lower() for n in GREEN.hash_columns]
    assert sql.startswith("TO_HEX(MD5(CONCAT(") and sql.count("COALESCE(") == 7
    # The same columns the Python/Postgres row id uses.
    plan = hash_plan(GREEN, GREEN.header)
    assert [GREEN.header[i].lower() for i, _ in plan] == [n.lower() for n in GREEN.hash_columns]
