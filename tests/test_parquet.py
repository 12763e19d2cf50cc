"""The Parquet file: lineage columns, row ids equal to the CSV-side formula, reuse keyed by
the source's sha256 and the format version, rebuild of a truncated or foreign file."""

from __future__ import annotations

import gzip
import hashlib
import os
from collections import Counter
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from taxi_cli import __version__, parquet, synthetic
from taxi_cli.catalog import GREEN, YELLOW
from taxi_cli.errors import DataError
from taxi_cli.model import Extracted
from taxi_cli.parquet import (
    FORMAT_VERSION,
    LINEAGE,
    META_FORMAT,
    META_ROWS,
    META_SOURCE,
    META_TOOL,
    is_current,
    parquet_path_for,
    to_parquet,
)
from taxi_cli.rowid import hash_plan, row_id

MONTH = "2020-04"


def _write(tmp_path: Path, rows: int, *, seed: int = 0, taxi: str = "yellow") -> Path:
    path = tmp_path / f"{taxi}_tripdata_{MONTH}.csv.gz"
    synthetic.write_month(path, taxi, MONTH, rows, seed=seed)
    return path


def _python_ids(path: Path, header: tuple[str, ...]) -> list[str]:
    """The reference: `taxi_cli.rowid` on each raw CSV record, in file order."""
    taxi = YELLOW if header == YELLOW.header else GREEN
    plan = hash_plan(taxi, header)
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()[1:]
    return [row_id(line.split(","), plan) for line in lines]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _extracted(path: Path, sha256: str, rows: int) -> Extracted:
    return Extracted(
        taxi="yellow",
        month=MONTH,
        path=path,
        rows=rows,
        compressed_bytes=path.stat().st_size,
        uncompressed_bytes=0,
        sha256=sha256,
        cached=True,
    )


# ---- content ----------------------------------------------------------------------------


def test_lineage_columns_and_row_ids_in_file_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # small blocks: many blocks, taken from two workers, must come out in file order
    monkeypatch.setattr(parquet, "BLOCK_BYTES", 64 << 10)
    path = _write(tmp_path, 20_000)
    df = pl.read_parquet(to_parquet(path, YELLOW))
    assert df.columns == [*LINEAGE, *YELLOW.header]
    assert df.schema["unique_row_id"] == pl.String
    assert df.schema["file_month"] == pl.Date
    assert df["filename"].unique().to_list() == [f"yellow_tripdata_{MONTH}.csv"]
    assert df["file_month"].unique().to_list() == [date(2020, 4, 1)]
    assert df["unique_row_id"].to_list() == _python_ids(path, YELLOW.header)
    assert df["VendorID"].null_count() == 2_000  # the vendorless tail: ids hash '' for NULL


def test_odd_values_take_the_lenient_path_and_hash_as_postgresql_renders_them(
    tmp_path: Path,
) -> None:
    header = ",".join(YELLOW.header)
    base = "1,2020-04-01 00:25:32,2020-04-01 00:33:39,1,1.50,1,N,238,75,2,8,0.5,0.5,0,0,0.3,9.3,0"
    rows = [
        base,
        # ISO `T`, fractional seconds, exponent-range doubles, padded text, `2.0` ids
        "2,2020-04-01T00:25:32,2020-04-01 00:33:39.500,1,.86,1,N,7,75,2,1e-05,0,0,0,0,0,0,0",
        "2.0,2020-04-01 00:25:32.000,2020-04-01 00:33:39,1,1000000000000000,1,N,7,75,2,-0"
        ",0,0,0,0,0,0,0",
        " 1 ,2020-04-01 00:00:00,,,0.30000000000000004,,,,,,123456789012345.6,0,0,0,0,0,0,0",
        ",,,,,,,,,,,,,,,,,",
    ]
    path = tmp_path / f"yellow_tripdata_{MONTH}.csv.gz"
    path.write_bytes(gzip.compress(("\r\n".join([header, *rows]) + "\r\n").encode()))
    df = pl.read_parquet(to_parquet(path, YELLOW))
    plan = hash_plan(YELLOW, YELLOW.header)
    assert df["unique_row_id"].to_list() == [row_id(r.split(","), plan) for r in rows]
    assert df["VendorID"].to_list() == [1, 2, 2, 1, None]
    assert df["tpep_dropoff_datetime"][1].microsecond == 500_000


def test_a_bad_value_names_line_and_column_and_leaves_nothing(tmp_path: Path) -> None:
    lines = synthetic.csv_bytes("green", MONTH, 30_000, crlf=False).splitlines()
    fields = lines[25_000].split(b",")
    fields[GREEN.header.index("fare_amount")] = b"12x"
    lines[25_000] = b",".join(fields)
    path = tmp_path / f"green_tripdata_{MONTH}.csv.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    with pytest.raises(DataError, match=r"line 25001, column fare_amount: '12x' is not a number"):
        to_parquet(path, GREEN)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_a_corrupt_gzip_is_a_data_error_and_leaves_nothing(tmp_path: Path) -> None:
    path = _write(tmp_path, 50_000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot read the file"):
        to_parquet(path, YELLOW)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_file_month_comes_from_the_source_or_the_name(tmp_path: Path) -> None:
    path = _write(tmp_path, 10)
    odd = path.rename(tmp_path / "sample.csv.gz")
    with pytest.raises(DataError, match="its month \\(file_month\\) is unknown"):
        to_parquet(odd, YELLOW)
    df = pl.read_parquet(to_parquet(odd, YELLOW, month="2019-12"))
    assert df["file_month"].unique().to_list() == [date(2019, 12, 1)]
    assert df["filename"].unique().to_list() == ["sample.csv"]


# ---- keyed by content -------------------------------------------------------------------


def test_metadata_records_source_sha256_format_and_rows(tmp_path: Path) -> None:
    path = _write(tmp_path, 1_000)
    meta = pl.read_parquet_metadata(to_parquet(path, YELLOW))
    assert meta[META_SOURCE] == _sha256(path)
    assert meta[META_FORMAT] == FORMAT_VERSION
    assert meta[META_ROWS] == "1000"
    assert meta[META_TOOL] == __version__


def test_reused_only_for_the_same_sha256_and_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, 1_000)
    out = to_parquet(path, YELLOW)
    first = os.stat(out)
    assert to_parquet(path, YELLOW) == out
    assert os.stat(out).st_ino == first.st_ino  # reused: not rewritten

    # same name, other content (even with an older mtime): rebuilt
    _write(tmp_path, 1_200, seed=5)
    os.utime(path, ns=(first.st_mtime_ns - 10**9, first.st_mtime_ns - 10**9))
    assert pl.read_parquet(to_parquet(path, YELLOW)).height == 1_200
    assert pl.read_parquet_metadata(out)[META_SOURCE] == _sha256(path)
    second = os.stat(out).st_ino

    # another format version: rebuilt
    monkeypatch.setattr(parquet, "FORMAT_VERSION", "999")
    to_parquet(path, YELLOW)
    assert os.stat(out).st_ino != second
    assert pl.read_parquet_metadata(out)[META_FORMAT] == "999"


def test_extracted_sha256_keys_the_reuse(tmp_path: Path) -> None:
    path = _write(tmp_path, 500)
    sha = _sha256(path)
    out = to_parquet(_extracted(path, sha, 500), YELLOW)
    assert is_current(out, sha)
    ino = os.stat(out).st_ino
    assert to_parquet(_extracted(path, sha, 500), YELLOW) == out
    assert os.stat(out).st_ino == ino
    # a verified digest that no longer matches the bytes: refused, the old file kept
    with pytest.raises(DataError, match="changed since it was verified"):
        to_parquet(_extracted(path, "0" * 64, 500), YELLOW)
    assert os.stat(out).st_ino == ino
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, out.name])


@pytest.mark.parametrize(
    "damage",
    ["truncated", "empty", "garbage", "no metadata"],
)
def test_a_damaged_or_foreign_parquet_is_rebuilt_not_a_crash(tmp_path: Path, damage: str) -> None:
    path = _write(tmp_path, 2_000)
    out = to_parquet(path, YELLOW)
    good = pl.read_parquet(out)
    data = out.read_bytes()
    if damage == "truncated":
        out.write_bytes(data[: len(data) - 100])
    elif damage == "empty":
        out.write_bytes(b"")
    elif damage == "garbage":
        out.write_bytes(b"PAR1" + os.urandom(4000))
    else:  # e.g. written by an older taxi-cli: the right rows, no provenance
        good.head(10).write_parquet(out)
    assert not is_current(out, _sha256(path))
    assert to_parquet(path, YELLOW) == out
    assert pl.read_parquet(out).equals(good)
    assert is_current(out, _sha256(path))


def test_force_rebuilds_a_current_file(tmp_path: Path) -> None:
    path = _write(tmp_path, 300)
    out = to_parquet(path, YELLOW)
    ino = os.stat(out).st_ino
    to_parquet(path, YELLOW, force=True)
    assert os.stat(out).st_ino != ino
    assert parquet_path_for(path) == out


def test_many_blocks_match_one_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, 30_000, taxi="green")
    whole = pl.read_parquet(to_parquet(path, GREEN))
    monkeypatch.setattr(parquet, "BLOCK_BYTES", 10_000)
    monkeypatch.setattr(parquet, "WORKERS", 3)
    split = pl.read_parquet(to_parquet(path, GREEN, force=True))
    assert split.equals(whole)
    assert Counter(split["unique_row_id"].to_list()) == Counter(_python_ids(path, GREEN.header))


# ---- line structure -----------------------------------------------------------------------


def test_blank_lines_are_skipped_as_load_pg_does(tmp_path: Path) -> None:
    lines = synthetic.csv_bytes("yellow", MONTH, 40, crlf=False).splitlines()
    text = b"\r\n".join([*lines[:10], b"", *lines[10:], b"", b""]) + b"\r\n"
    path = tmp_path / f"yellow_tripdata_{MONTH}.csv.gz"
    path.write_bytes(gzip.compress(text))
    df = pl.read_parquet(to_parquet(path, YELLOW))
    assert df.height == 40
    plan = hash_plan(YELLOW, YELLOW.header)
    expected = [row_id(line.decode().split(","), plan) for line in lines[1:]]
    assert df["unique_row_id"].to_list() == expected


def test_a_short_line_is_named_not_filled_with_nulls(tmp_path: Path) -> None:
    lines = synthetic.csv_bytes("yellow", MONTH, 40, crlf=False).splitlines()
    lines[7] = lines[7].rsplit(b",", 2)[0]  # two fields short: a truncated record
    path = tmp_path / f"yellow_tripdata_{MONTH}.csv.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    with pytest.raises(DataError, match=r"line 8: 16 fields, expected 18"):
        to_parquet(path, YELLOW)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_a_quoted_newline_never_splits_a_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parquet, "BLOCK_BYTES", 200)  # a block boundary inside the quotes
    lines = synthetic.csv_bytes("yellow", MONTH, 30, crlf=False).splitlines()
    flag = YELLOW.header.index("store_and_fwd_flag")
    for i in (3, 12, 20):
        fields = lines[i].split(b",")
        fields[flag] = b'"N\nsecond ""line"""'
        lines[i] = b",".join(fields)
    path = tmp_path / f"yellow_tripdata_{MONTH}.csv.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    df = pl.read_parquet(to_parquet(path, YELLOW))
    assert df.height == 30
    assert df["store_and_fwd_flag"][11] == 'N\nsecond "line"'
    plain = [line.replace(b'"N\nsecond ""line"""', b"N") for line in lines[1:]]
    plan = hash_plan(YELLOW, YELLOW.header)  # the flag is not hashed
    assert df["unique_row_id"].to_list() == [row_id(p.decode().split(","), plan) for p in plain]
