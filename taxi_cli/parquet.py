"""Typed Parquet from a verified release `.csv.gz` (`extract --format parquet`, GCS).

Types follow the catalogue: ids and counts are nullable Int64, timestamps are
timestamps, money and distance float64, flags and text strings; an empty field is null.
Columns take the catalogue's names (`taxi.header`), whatever spelling the file used.
An integer column accepts `2.0` (pandas round-trips write that) but not `2.5`.

Memory stays bounded on a 7,000,000-row month: the gzip is streamed to a temporary
plain CSV next to the output, and Polars' streaming engine sinks it to Parquet in one
pass with strict casts. Only if a cast fails does a second, lenient pass look for the
first bad value (so the error names its line and column) or, when every value fits
(`2.0`), convert it. Every column is read as a string and cast explicitly, so nothing
depends on type inference.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from taxi_cli.catalog import TAXIS, Kind, TaxiType
from taxi_cli.errors import DataError
from taxi_cli.verify import VerifyError, check_header

if TYPE_CHECKING:
    from taxi_cli.model import Extracted

RELEASE_TIMESTAMP = "%Y-%m-%d %H:%M:%S"
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S%.f"  # the lenient path also takes fractions
_ROW = "__row"

_WHAT = {
    Kind.ID: "an integer",
    Kind.COUNT: "an integer",
    Kind.TIMESTAMP: "a timestamp YYYY-MM-DD HH:MM:SS",
    Kind.MONEY: "a number",
}


def parquet_path_for(path: Path) -> Path:
    """`green_tripdata_2020-04.csv.gz` -> `green_tripdata_2020-04.parquet`, same dir."""
    stem = path.name.removesuffix(".gz").removesuffix(".csv")
    return path.with_name(stem + ".parquet")


def _typed(raw: pl.Expr, kind: Kind) -> pl.Expr:
    """The typed value of one string column (null where the text does not parse)."""
    if kind in (Kind.ID, Kind.COUNT):
        text = raw.str.strip_chars()
        as_float = text.cast(pl.Float64, strict=False)
        integral = as_float.is_finite() & (as_float == as_float.floor()) & (as_float.abs() < 2**53)
        from_float = pl.when(integral).then(as_float).otherwise(None).cast(pl.Int64)
        return pl.coalesce(text.cast(pl.Int64, strict=False), from_float)
    if kind is Kind.TIMESTAMP:
        return raw.str.strip_chars().str.to_datetime(TIMESTAMP_FORMAT, strict=False, time_unit="us")
    if kind is Kind.MONEY:
        return raw.str.strip_chars().cast(pl.Float64, strict=False)
    return raw


def _strict(raw: pl.Expr, kind: Kind) -> pl.Expr:
    """The fast cast, for release-format text; raises on anything else."""
    if kind in (Kind.ID, Kind.COUNT):
        return raw.cast(pl.Int64)
    if kind is Kind.TIMESTAMP:
        return raw.str.to_datetime(RELEASE_TIMESTAMP, time_unit="us")
    if kind is Kind.MONEY:
        return raw.cast(pl.Float64)
    return raw


def _sink(frame: pl.LazyFrame, path: Path) -> None:
    # snappy: fast, and readable by every Parquet consumer (BigQuery, Spark, DuckDB)
    frame.sink_parquet(path, compression="snappy", row_group_size=256_000)


def _gunzip_to(src: Path, dest: Path) -> None:
    with gzip.open(src, "rb") as fin, dest.open("wb") as fout:
        shutil.copyfileobj(fin, fout, 4 << 20)


def _first_line(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.readline(1 << 16)


def to_parquet(source: Extracted | Path, taxi: TaxiType | str, *, force: bool = False) -> Path:
    """Write the typed Parquet next to the `.csv.gz` (atomically) and return its path.

    An existing Parquet newer than the CSV is reused unless `force`. A value that does
    not fit its column raises DataError naming the line and column.
    """
    taxi = TAXIS[taxi] if isinstance(taxi, str) else taxi
    path = source if isinstance(source, Path) else source.path
    out = parquet_path_for(path)
    if out.exists() and not force and out.stat().st_mtime_ns >= path.stat().st_mtime_ns:
        return out
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".parquet-") as tmp:
        plain = Path(tmp) / "data.csv"
        if path.name.endswith(".gz"):
            _gunzip_to(path, plain)
        else:
            plain = path
        header_line = _first_line(plain).removeprefix(b"\xef\xbb\xbf")
        file_header = tuple(header_line.decode("utf-8", "replace").strip().split(","))
        try:
            check_header(path.name, taxi, file_header)
        except VerifyError as exc:
            raise DataError(str(exc)) from exc
        lf = pl.scan_csv(
            plain,
            has_header=True,
            schema=dict.fromkeys(file_header, pl.String),
            quote_char='"',
            encoding="utf8",
        ).rename(dict(zip(file_header, taxi.header, strict=True)))
        staging = Path(tmp) / out.name
        strict = lf.select(_strict(pl.col(c.name), c.kind).alias(c.name) for c in taxi.columns)
        try:
            _sink(strict, staging)
        except pl.exceptions.PolarsError:
            # Something is not plain: find a bad value (its line and column) or, when
            # every value fits (`2.0` in an integer column), convert leniently.
            _check_values(lf, taxi, path.name)
            _sink(
                lf.select(_typed(pl.col(c.name), c.kind).alias(c.name) for c in taxi.columns),
                staging,
            )
        os.replace(staging, out)
    return out


def _check_values(lf: pl.LazyFrame, taxi: TaxiType, name: str) -> None:
    """Raise DataError at the first value that does not parse as its column's type."""
    checked = [c for c in taxi.columns if c.kind in _WHAT]
    bad = [
        (pl.col(c.name).is_not_null() & _typed(pl.col(c.name), c.kind).is_null()).alias(f"bad_{i}")
        for i, c in enumerate(checked)
    ]
    first = (
        lf.with_row_index(_ROW)
        .with_columns(bad)
        .filter(pl.any_horizontal(f"bad_{i}" for i in range(len(checked))))
        .head(1)
        .collect(engine="streaming")
    )
    if first.height == 0:
        return
    row = first.row(0, named=True)
    for i, column in enumerate(checked):
        if row[f"bad_{i}"]:
            line = int(row[_ROW]) + 2  # the header is line 1
            raise DataError(
                f"{name}: line {line}, column {column.name}: {row[column.name]!r} is not "
                f"{_WHAT[column.kind]}; the file is not in the release format "
                "(fix or re-download it with --force)"
            )
