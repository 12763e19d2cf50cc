"""Deterministic synthetic months in the release's CSV format, for tests and benchmarks.

The output mimics what the DTC release files really contain (see
tests/data/real/SOURCES.md): the catalogue's exact header, CRLF line endings, no quoting,
timestamps `YYYY-MM-DD HH:MM:SS` with a few pickups outside the month, location ids
1..265, distances written `1.50` / `.86`, money written as the TLC writes it (`8`,
`0.5`, `9.3`, `47.67`, sometimes negative), and the contiguous tail block of rows with
an empty VendorID (those rows also lack the flag, rate code, passenger count, payment
and trip type, and their timestamps fall on whole minutes).

Everything is vectorised (numpy draws, Polars string building), so a million yellow rows
take a few seconds. The same (taxi, month, rows, seed) always gives the same bytes.
"""

from __future__ import annotations

import gzip
import io
import zlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from taxi_cli.catalog import TAXIS, TaxiType

# Fields that the vendorless tail block leaves empty (when the taxi type has them).
# Yellow's real tail keeps congestion_surcharge (`0`), green's leaves it empty.
_TAIL_EMPTY = {
    "VendorID",
    "store_and_fwd_flag",
    "RatecodeID",
    "passenger_count",
    "payment_type",
    "trip_type",
}
_TAIL_EMPTY_GREEN = {*_TAIL_EMPTY, "congestion_surcharge"}

# The gzip MTIME written into synthetic files: inside the DTC re-upload window.
GZIP_MTIME = 1657790345
CHUNK_ROWS = 1_000_000


def _rng(seed: int, taxi: TaxiType, month: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(f"{taxi.name}/{month}".encode())])


def _month_bounds(month: str) -> tuple[int, int]:
    year, mon = (int(x) for x in month.split("-"))
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp()), int(end.timestamp())


def _ints(values: np.ndarray) -> pl.Series:
    return pl.Series(values.astype(np.int64)).cast(pl.String)


def _money(cents: np.ndarray) -> pl.Series:
    """Money as the TLC writes it: `8`, `0.5`, `9.3`, `47.67`, `-0.5`."""
    # The shortest round-trip text of k/100 is its two-decimal form, trailing zeros cut.
    return pl.Series(cents.astype(np.int64) / 100).cast(pl.String).str.strip_suffix(".0")


def _distance(hundredths: np.ndarray) -> pl.Series:
    """Distances with two decimals and no leading zero: `1.50`, `.86`, `.00`."""
    frame = pl.DataFrame({"c": hundredths.astype(np.int64)})
    c = pl.col("c")
    whole = pl.when(c < 100).then(pl.lit("")).otherwise((c // 100).cast(pl.String))
    frac = (c % 100).cast(pl.String).str.zfill(2)
    return frame.select(pl.concat_str([whole, pl.lit("."), frac]).alias("v")).to_series()


def _timestamps(epoch: np.ndarray) -> pl.Series:
    return (
        pl.Series(epoch.astype(np.int64) * 1_000_000)
        .cast(pl.Datetime("us"))
        .dt.strftime("%Y-%m-%d %H:%M:%S")
    )


def _bases(rng: np.random.Generator, n: int, pool: int = 40) -> pl.Series:
    """Base licence numbers like `B02764`, drawn from a small pool as in the real files."""
    codes = rng.integers(1, 3000, size=pool)
    picks = pl.DataFrame({"c": codes[rng.integers(0, pool, size=n)]})
    return picks.select(
        pl.concat_str([pl.lit("B"), pl.col("c").cast(pl.String).str.zfill(5)])
    ).to_series()


def frame(
    taxi: TaxiType | str,
    month: str,
    rows: int,
    *,
    seed: int = 0,
    vendorless_tail: float = 0.1,
    outside_month: int | None = None,
) -> pl.DataFrame:
    """The month as a frame of strings (null = empty field), columns in header order."""
    taxi = TAXIS[taxi] if isinstance(taxi, str) else taxi
    tail = int(round(rows * vendorless_tail)) if "VendorID" in taxi.header else 0
    return _chunk(taxi, month, rows, _rng(seed, taxi, month), tail, outside_month)


def _chunk(
    taxi: TaxiType,
    month: str,
    n: int,
    rng: np.random.Generator,
    tail: int,
    outside_month: int | None = None,
) -> pl.DataFrame:
    """`n` rows of which the last `tail` belong to the vendorless block."""
    start, end = _month_bounds(month)
    pickup = rng.integers(start, end, size=n)
    # A few pickups outside the month, as in every real file (late records, 2009 clocks).
    n_out = (n // 5000 + 1 if n >= 100 else 0) if outside_month is None else outside_month
    if n_out:
        where = rng.choice(n, size=min(n_out, n), replace=False)
        pickup[where] = start - rng.integers(60, 40 * 86400, size=where.size)
        pickup[where[0]] = int(datetime(2009, 1, 1, 0, 3, 41, tzinfo=UTC).timestamp())
    duration = (rng.exponential(900, size=n) + 30).astype(np.int64)
    dropoff = pickup + duration

    tail_start = n - tail
    if tail:
        pickup[tail_start:] -= pickup[tail_start:] % 60
        dropoff[tail_start:] = pickup[tail_start:] + 60 * (1 + duration[tail_start:] // 60)

    dist = (rng.exponential(3.0, size=n) * 100).astype(np.int64)
    fare = (250 + dist * 2.5 + rng.integers(0, 400, size=n)).astype(np.int64) // 50 * 50
    negative = rng.random(n) < 0.003
    sign = np.where(negative, -1, 1)
    extra = rng.choice([0, 50, 100, 250, 275, 325], size=n) * sign
    mta = np.full(n, 50) * sign
    tip = np.where(rng.random(n) < 0.4, (fare * rng.uniform(0.1, 0.3, size=n)).astype(int), 0)
    tolls = np.where(rng.random(n) < 0.05, 612, 0)
    improvement = np.full(n, 30) * sign
    congestion = np.where(rng.random(n) < 0.5, 275, 0) * sign
    fare = fare * sign
    total = fare + extra + mta + tip + tolls + improvement + congestion

    cols: dict[str, pl.Series] = {}
    for name in taxi.header:
        key = name.lower()
        if key == "vendorid":
            cols[name] = _ints(rng.choice([1, 2], size=n, p=[0.3, 0.7]))
        elif key == taxi.pickup.lower():
            cols[name] = _timestamps(pickup)
        elif key == taxi.dropoff.lower():
            cols[name] = _timestamps(dropoff)
        elif key == "passenger_count":
            cols[name] = _ints(rng.choice(7, size=n, p=[0.01, 0.7, 0.15, 0.05, 0.03, 0.04, 0.02]))
        elif key == "trip_distance":
            cols[name] = _distance(dist)
        elif key == "ratecodeid":
            cols[name] = _ints(
                rng.choice([1, 2, 3, 4, 5, 6, 99], size=n, p=[0.95] + [0.0098] * 5 + [0.001])
            )
        elif key in ("store_and_fwd_flag",):
            cols[name] = pl.Series(np.where(rng.random(n) < 0.002, "Y", "N"))
        elif key in ("pulocationid", "dolocationid"):
            ids = _ints(rng.integers(1, 266, size=n))
            if taxi.name == "fhv":  # FHV leaves most locations empty
                ids = ids.zip_with(
                    pl.Series(rng.random(n) < 0.5), pl.Series([None], dtype=pl.String)
                )
            cols[name] = ids
        elif key == "payment_type":
            cols[name] = _ints(
                rng.choice([1, 2, 3, 4, 5], size=n, p=[0.6, 0.35, 0.03, 0.019, 0.001])
            )
        elif key == "trip_type":
            cols[name] = _ints(rng.choice([1, 2], size=n, p=[0.97, 0.03]))
        elif key == "fare_amount":
            cols[name] = _money(fare)
        elif key == "extra":
            cols[name] = _money(extra)
        elif key == "mta_tax":
            cols[name] = _money(mta)
        elif key == "tip_amount":
            cols[name] = _money(tip)
        elif key == "tolls_amount":
            cols[name] = _money(tolls)
        elif key == "improvement_surcharge":
            cols[name] = _money(improvement)
        elif key == "total_amount":
            cols[name] = _money(total)
        elif key == "congestion_surcharge":
            cols[name] = _money(congestion)
        elif key == "ehail_fee":
            cols[name] = pl.Series([None] * n, dtype=pl.String)
        elif key in ("dispatching_base_num", "affiliated_base_number"):
            cols[name] = _bases(rng, n)
        elif key == "sr_flag":  # fhvhv 2021 writes N (shared rides Y); FHV 2019 mostly empty
            if taxi.name == "fhvhv":
                cols[name] = pl.Series(np.where(rng.random(n) < 0.05, "Y", "N"))
            else:
                flag = np.where(rng.random(n) < 0.1, "1", "")
                cols[name] = pl.Series(flag).replace("", None)
        else:  # pragma: no cover - the catalogue has no other columns
            raise ValueError(f"no generator for column {name!r}")
        cols[name] = cols[name].alias(name).cast(pl.String)
    df = pl.DataFrame(list(cols.values()))
    if tail:
        empty = _TAIL_EMPTY_GREEN if taxi.name == "green" else _TAIL_EMPTY
        in_tail = pl.int_range(pl.len()) >= tail_start
        df = df.with_columns(
            pl.when(in_tail).then(None).otherwise(pl.col(c)).alias(c)
            for c in taxi.header
            if c in empty
        )
    return df


def csv_bytes(
    taxi: TaxiType | str,
    month: str,
    rows: int,
    *,
    seed: int = 0,
    crlf: bool = True,
    vendorless_tail: float = 0.1,
    header: tuple[str, ...] | None = None,
) -> bytes:
    """The uncompressed CSV text of a synthetic month."""
    df = frame(taxi, month, rows, seed=seed, vendorless_tail=vendorless_tail)
    if header is not None:
        df.columns = list(header)
    buf = io.BytesIO()
    df.write_csv(buf, line_terminator="\r\n" if crlf else "\n", null_value="", quote_style="never")
    return buf.getvalue()


def write_month(
    path: Path,
    taxi: TaxiType | str,
    month: str,
    rows: int,
    *,
    seed: int = 0,
    gzip_it: bool = True,
    crlf: bool = True,
    vendorless_tail: float = 0.1,
    compresslevel: int = 1,
    header: tuple[str, ...] | None = None,
) -> int:
    """Write a synthetic month to `path` (gzip unless `gzip_it=False`); returns the rows.

    `header` replaces the header line (same number of columns), e.g. to fake a file of
    another taxi type. The gzip header carries the CSV's name and a fixed MTIME, so
    the same arguments always give the same bytes.
    """
    taxi = TAXIS[taxi] if isinstance(taxi, str) else taxi
    path.parent.mkdir(parents=True, exist_ok=True)
    if not gzip_it:
        path.write_bytes(
            csv_bytes(
                taxi,
                month,
                rows,
                seed=seed,
                crlf=crlf,
                vendorless_tail=vendorless_tail,
                header=header,
            )
        )
        return rows
    tail = int(round(rows * vendorless_tail)) if "VendorID" in taxi.header else 0
    name = path.name.removesuffix(".gz")
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(name, "wb", compresslevel, raw, mtime=GZIP_MTIME) as gz,
    ):
        # Large months are built a million rows at a time to bound memory.
        for index, first in enumerate(range(0, max(rows, 1), CHUNK_ROWS)):
            n = min(CHUNK_ROWS, rows - first)
            rng = _rng(seed, taxi, month) if index == 0 else _rng(seed + index, taxi, month)
            chunk_tail = max(0, first + n - max(first, rows - tail))
            df = _chunk(taxi, month, n, rng, chunk_tail)
            if header is not None:
                df.columns = list(header)
            buf = io.BytesIO()
            df.write_csv(
                buf,
                include_header=index == 0,
                line_terminator="\r\n" if crlf else "\n",
                null_value="",
                quote_style="never",
            )
            gz.write(buf.getbuffer())
    return rows


def main(argv: list[str] | None = None) -> None:
    """`python -m taxi_cli.synthetic yellow 2019-03 7000000 out.csv.gz`: a benchmark file."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m taxi_cli.synthetic", description=main.__doc__)
    parser.add_argument("taxi", choices=sorted(TAXIS))
    parser.add_argument("month", help="YYYY-MM")
    parser.add_argument("rows", type=int)
    parser.add_argument("path", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--level", type=int, default=1, help="gzip level (6 ~ the release's)")
    args = parser.parse_args(argv)
    write_month(
        args.path, args.taxi, args.month, args.rows, seed=args.seed, compresslevel=args.level
    )


if __name__ == "__main__":
    main()
