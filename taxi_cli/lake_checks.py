"""The data checks (`taxi_cli.quality`) of a file bound for GCS or BigQuery, counted
locally before anything is uploaded or loaded: no BigQuery query (no cost), and a breach
of `fail` limits stops the partition while the destination is untouched.

The checks and their meaning are pg's (`taxi_cli.postgres.reconcile`), over the typed
values the destination receives:

- typed Parquet (the default lake): one lazy Polars aggregate over the file's columns
  (only the columns checked are read; streaming, bounded memory);
- a csv.gz lake: the verified `.csv.gz` itself, inflated and parsed in whole-line blocks
  of the checked columns only (bounded memory, one pass), with the same lenient typing
  as the Parquet conversion: a value that does not parse counts as null, as it cannot
  be outside a month or negative (BigQuery's load of that object refuses such a file
  anyway).

Unknown zones: the release's zone ids are 1..265 (`taxi_zone_lookup.csv`); no zone
table is consulted for the cloud targets (pg without its zones table does the same).
The ids are typed here as in BigQuery (INT64), so a release's `097` is the zone 97
(pg, which keeps the text, counts it unknown).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import polars as pl

from taxi_cli.catalog import Kind, TaxiType, next_month
from taxi_cli.errors import DataError
from taxi_cli.quality import CHECKS, Limits, Outcome

ZONE_IDS = (1, 265)  # the release's LocationIDs
BLOCK_BYTES = 8 << 20  # csv.gz: inflated text parsed at once (a few MiB of rows)


def _name(taxi: TaxiType, wanted: str) -> str | None:
    """The catalogue's spelling of a column, matched case-insensitively (as pg does)."""
    return next((c.name for c in taxi.columns if c.name.lower() == wanted.lower()), None)


def _columns(taxi: TaxiType) -> list[str]:
    wanted = [taxi.pickup, taxi.dropoff, "fare_amount", "total_amount", "passenger_count"]
    wanted += ["PULocationID", "DOLocationID"]
    found = [_name(taxi, w) for w in wanted]
    return list(dict.fromkeys(n for n in found if n is not None))


def expressions(taxi: TaxiType, month: str | None) -> dict[str, pl.Expr]:
    """check -> a boolean expression per row (null counts as False), pg's conditions."""
    pickup, dropoff = pl.col(taxi.pickup), pl.col(taxi.dropoff)
    checks: dict[str, pl.Expr] = {}
    if month is not None:
        start = datetime.fromisoformat(f"{month}-01")
        end = datetime.fromisoformat(f"{next_month(month)}-01")
        checks["outside_month"] = (pickup < start) | (pickup >= end)
    checks["dropoff_before_pickup"] = dropoff < pickup
    fare, total = _name(taxi, "fare_amount"), _name(taxi, "total_amount")
    if fare and total:
        checks["negative_amounts"] = (pl.col(fare) < 0) | (pl.col(total) < 0)
    passengers = _name(taxi, "passenger_count")
    if passengers:
        checks["null_passenger_count"] = pl.col(passengers).is_null()
    pu, do = _name(taxi, "PULocationID"), _name(taxi, "DOLocationID")
    if pu and do:
        low, high = ZONE_IDS
        checks["unknown_zones"] = pl.any_horizontal(
            pl.col(c).is_not_null() & ~pl.col(c).is_between(low, high) for c in (pu, do)
        )
    assert set(checks) <= set(CHECKS)
    return {name: expr.fill_null(False) for name, expr in checks.items()}


def _aggregate(taxi: TaxiType, month: str | None) -> list[pl.Expr]:
    return [
        expr.cast(pl.Int64).sum().alias(name) for name, expr in expressions(taxi, month).items()
    ] + [pl.len().alias("\0rows")]


def _counted(frame: pl.DataFrame) -> tuple[int, dict[str, int]]:
    values = frame.row(0, named=True)
    rows = int(values.pop("\0rows") or 0)
    return rows, {name: int(v or 0) for name, v in values.items()}


def of_parquet(path: Path, taxi: TaxiType, month: str | None) -> tuple[int, dict[str, int]]:
    """(rows, check -> rows breaching it) of a typed Parquet file (`taxi_cli.parquet`)."""
    try:
        frame = pl.scan_parquet(path).select(_aggregate(taxi, month)).collect()
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise DataError(
            f"{path}: cannot read it to run the data checks ({exc}); nothing was uploaded; "
            "run `taxi-cli extract --format parquet --force`"
        ) from exc
    return _counted(frame)


def _typed(name: str, kind: Kind) -> pl.Expr:
    text = pl.col(name).str.strip_chars()
    if kind is Kind.TIMESTAMP:
        text = text.str.replace("T", " ", literal=True)
        return text.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us")
    if kind in (Kind.ID, Kind.COUNT):
        return pl.coalesce(
            text.cast(pl.Int64, strict=False), text.cast(pl.Float64, strict=False).round()
        ).cast(pl.Float64)
    if kind is Kind.MONEY:
        return text.cast(pl.Float64, strict=False)
    return pl.col(name)


def _blocks(path: Path) -> Iterator[bytes]:
    """Whole-line blocks of the inflated file after its header (none cut inside a quote)."""
    from isal import igzip

    with igzip.open(path, "rb") as src:  # type: ignore[no-untyped-call]
        src.readline()  # the header: `extract` verified it is the taxi's
        while data := src.read(BLOCK_BYTES):
            if not data.endswith(b"\n"):
                data += src.readline()
            while b'"' in data and data.count(b'"') % 2:
                more = src.readline()
                if not more:
                    break
                data += more
            yield data


def of_csv_gz(path: Path, taxi: TaxiType, month: str | None) -> tuple[int, dict[str, int]]:
    """(rows, check -> rows breaching it) of a verified release `.csv.gz`."""
    wanted = _columns(taxi)
    kinds = {c.name: c.kind for c in taxi.columns}
    index = [i for i, c in enumerate(taxi.columns) if c.name in wanted]
    names = [taxi.columns[i].name for i in index]
    rows, counts = 0, dict[str, int]()
    aggregate = _aggregate(taxi, month)
    try:
        for block in _blocks(path):
            raw = pl.read_csv(
                block,
                has_header=False,
                columns=index,  # only the checked columns are parsed
                schema_overrides={f"column_{i + 1}": pl.String() for i in index},
                infer_schema=False,
                quote_char='"',
                encoding="utf8-lossy",
            )
            raw = raw.rename(dict(zip(raw.columns, names, strict=True)))
            if raw.height == 0:
                continue
            typed = raw.select(_typed(n, kinds[n]).alias(n) for n in names)
            got, found = _counted(typed.select(aggregate))
            rows += got
            for name, value in found.items():
                counts[name] = counts.get(name, 0) + value
    except (OSError, EOFError, pl.exceptions.PolarsError) as exc:
        raise DataError(
            f"{path}: cannot read it to run the data checks ({exc}); nothing was uploaded; "
            "run `taxi-cli extract --force`"
        ) from exc
    return rows, counts


def outcome(
    path: Path, taxi: TaxiType, month: str | None, limits: Limits, *, parquet: bool
) -> Outcome:
    """The checks of `path` against `limits` (no verdict: the caller raises on `fail`)."""
    rows, counts = (of_parquet if parquet else of_csv_gz)(path, taxi, month)
    return Outcome(rows, counts, limits.shares)
