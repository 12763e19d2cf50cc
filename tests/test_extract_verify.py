"""Verification and Parquet conversion on local files: real samples and crafted faults."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import polars as pl
import pytest

from taxi_cli import synthetic
from taxi_cli.catalog import FHV, FHVHV, GREEN, YELLOW, ManifestEntry, TaxiType, manifest
from taxi_cli.errors import DataError
from taxi_cli.parquet import LINEAGE, parquet_path_for, to_parquet
from taxi_cli.verify import VerifyError, verify_trip_file, verify_zones
from tests.fixtures_mirror import REAL, SHARED_DATA


def gz(tmp_path: Path, data: bytes, name: str = "green_tripdata_2020-04.csv.gz") -> Path:
    path = tmp_path / name
    path.write_bytes(gzip.compress(data, mtime=0))
    return path


def green_lines(rows: int = 50) -> list[bytes]:
    return synthetic.csv_bytes("green", "2020-04", rows, crlf=False).splitlines()


# ---- line endings and the last line -------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
@pytest.mark.parametrize("final_newline", [True, False])
def test_crlf_lf_and_missing_final_newline(tmp_path: Path, eol: bytes, final_newline: bool) -> None:
    text = eol.join(green_lines(50)) + (eol if final_newline else b"")
    v = verify_trip_file(gz(tmp_path, text), GREEN)
    assert v.rows == 50
    assert v.uncompressed_bytes == len(text)
    assert (
        v.sha256
        == hashlib.sha256((tmp_path / "green_tripdata_2020-04.csv.gz").read_bytes()).hexdigest()
    )


def test_header_only_file_has_zero_rows(tmp_path: Path) -> None:
    assert verify_trip_file(gz(tmp_path, green_lines(0)[0] + b"\r\n"), GREEN).rows == 0


def test_trailing_blank_lines_are_tolerated_but_not_blank_lines_inside(tmp_path: Path) -> None:
    lines = green_lines(10)
    assert verify_trip_file(gz(tmp_path, b"\n".join(lines) + b"\n\n\n"), GREEN).rows == 10
    inside = b"\n".join(lines[:5] + [b""] + lines[5:]) + b"\n"
    with pytest.raises(VerifyError, match="line 6: empty line inside the file"):
        verify_trip_file(gz(tmp_path, inside), GREEN)


def test_short_and_long_records_name_their_line(tmp_path: Path) -> None:
    lines = green_lines(30)
    lines[7] += b",extra"
    with pytest.raises(VerifyError, match="line 8: 21 fields, expected 20$"):
        verify_trip_file(gz(tmp_path, b"\r\n".join(lines)), GREEN)


def test_a_short_record_across_slice_boundaries_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taxi_cli.verify.SCAN_CHUNK", 1000)  # many small numpy passes
    monkeypatch.setattr("taxi_cli.verify.READ_CHUNK", 333)
    lines = green_lines(2000)
    lines[1234] = lines[1234][:20]
    with pytest.raises(VerifyError, match="line 1235: 2 fields, expected 20: a short record"):
        verify_trip_file(gz(tmp_path, b"\r\n".join(lines) + b"\r\n"), GREEN)
    lines = green_lines(2000)
    assert verify_trip_file(gz(tmp_path, b"\r\n".join(lines) + b"\r\n"), GREEN).rows == 2000


def test_quoted_fields_use_the_exact_scan(tmp_path: Path) -> None:
    lines = green_lines(20)
    fields = lines[3].split(b",")
    fields[3] = b'"N"'
    lines[3] = b",".join(fields)
    lines[4] = lines[4].replace(b",N,", b',"a,b",', 1)  # a comma inside quotes is one field
    assert verify_trip_file(gz(tmp_path, b"\r\n".join(lines)), GREEN).rows == 20
    lines[9] = lines[9].rsplit(b",", 1)[0]
    with pytest.raises(VerifyError, match="line 10: 19 fields, expected 20"):
        verify_trip_file(gz(tmp_path, b"\r\n".join(lines)), GREEN)


# ---- the gzip stream ----------------------------------------------------------------------


def test_corrupt_crc_is_rejected(tmp_path: Path) -> None:
    path = gz(tmp_path, b"\r\n".join(green_lines(100)))
    data = bytearray(path.read_bytes())
    data[-6] ^= 0xFF  # inside the CRC32 trailer
    path.write_bytes(bytes(data))
    with pytest.raises(VerifyError, match="corrupt gzip data"):
        verify_trip_file(path, GREEN)


def test_second_gzip_member_is_read_and_trailing_garbage_rejected(tmp_path: Path) -> None:
    lines = green_lines(100)
    path = tmp_path / "green_tripdata_2020-04.csv.gz"
    first = b"\r\n".join(lines[:40]) + b"\r\n"
    second = b"\r\n".join(lines[40:]) + b"\r\n"
    path.write_bytes(gzip.compress(first) + gzip.compress(second))
    assert verify_trip_file(path, GREEN).rows == 100
    path.write_bytes(gzip.compress(first + second) + b"<html>oops</html>")
    with pytest.raises(VerifyError, match="trailing garbage after the gzip stream"):
        verify_trip_file(path, GREEN)


def test_real_truncated_gzip_names_the_line_where_it_stops() -> None:
    with pytest.raises(VerifyError) as info:
        verify_trip_file(REAL / "oluwasina_green_head.csv", GREEN)
    assert info.value.line == 1310  # 1,308 complete rows after the header, then a partial one
    assert "the gzip stream ends early" in str(info.value)


# ---- real samples and headers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "taxi", "rows"),
    [
        ("yellow_tripdata_2020-01.csv", YELLOW, 999),  # CRLF, empty-VendorID tail rows
        ("rides.csv", YELLOW, 266),  # no final newline
        ("gaikwad_yellow_head.csv", YELLOW, 99),  # 2019: empty congestion_surcharge
        ("green_head.csv", GREEN, 99),
        ("fhv_tripdata.csv", FHV, 1000),  # the DTC FHV header
        ("danielyrigney_head.csv", FHVHV, 100),  # the DTC fhvhv 2021-06 header
        ("danielyrigney_head.csv", FHV, 100),  # same layout is an FHV spelling too
    ],
)
def test_real_samples_verify(tmp_path: Path, sample: str, taxi: TaxiType, rows: int) -> None:
    path = gz(tmp_path, (REAL / sample).read_bytes(), "sample.csv.gz")
    assert verify_trip_file(path, taxi).rows == rows


def test_real_yellow_sample_ending_mid_row_is_a_truncation(tmp_path: Path) -> None:
    path = gz(tmp_path, (REAL / "yellow_tripdata_2021-01.csv").read_bytes(), "y.csv.gz")
    with pytest.raises(VerifyError, match="line 22794: 2 fields, expected 18: a short record"):
        verify_trip_file(path, YELLOW)


def test_pandas_reserialised_file_is_not_a_release_file(tmp_path: Path) -> None:
    data = (REAL / "green_tripdata_2020-04_with_index.csv").read_bytes()
    with pytest.raises(VerifyError, match="line 1: unexpected header 'trip_id,VendorID"):
        verify_trip_file(gz(tmp_path, data), GREEN)


def test_real_green_month_against_the_manifest() -> None:
    entry = manifest()["green_tripdata_2020-04.csv.gz"]
    v = verify_trip_file(REAL / "green_tripdata_2020-04.csv.gz", GREEN, entry)
    assert (v.rows, v.compressed_bytes, v.sha256, v.note) == (35_612, 670_357, entry.sha256, None)


def test_mtime_outside_the_upload_window_is_not_excused(tmp_path: Path) -> None:
    data = bytearray((REAL / "green_tripdata_2020-04.csv.gz").read_bytes())
    original = hashlib.sha256(data).hexdigest()
    data[4:8] = (1700000000).to_bytes(4, "little")
    path = tmp_path / "green_tripdata_2020-04.csv.gz"
    path.write_bytes(bytes(data))
    # a manifest that recorded the 2023 stamp's neighbour: no window value can match it
    entry = ManifestEntry(path.name, len(data), hashlib.sha256(b"x").hexdigest())
    with pytest.raises(VerifyError, match="same size, different content"):
        verify_trip_file(path, GREEN, entry)
    good = ManifestEntry(path.name, len(data), original)
    assert "only in the gzip timestamp" in str(verify_trip_file(path, GREEN, good).note)


def test_zone_lookup_variants(tmp_path: Path) -> None:
    entry = manifest()["taxi_zone_lookup.csv"]
    v = verify_zones(SHARED_DATA / "taxi_zone_lookup.csv", entry)
    assert (v.rows, v.compressed_bytes) == (265, 12_322)
    variants = REAL / "other_formats" / "zone_lookup_variants"
    for variant in sorted(variants.iterdir()):  # LF, lowercase, no final newline
        assert verify_zones(variant).rows == 265
    with pytest.raises(VerifyError, match="size 12,056 bytes"):
        verify_zones(variants / "taxi+_zone_lookup.csv", entry)


# ---- Parquet ------------------------------------------------------------------------------


def test_parquet_types_and_nulls(tmp_path: Path) -> None:
    path = tmp_path / "yellow_tripdata_2020-04.csv.gz"
    synthetic.write_month(path, "yellow", "2020-04", 3000, vendorless_tail=0.2)
    out = to_parquet(path, "yellow")
    assert out == parquet_path_for(path) == tmp_path / "yellow_tripdata_2020-04.parquet"
    df = pl.read_parquet(out)
    assert df.height == 3000
    expected = {
        "VendorID": pl.Int64,
        "tpep_pickup_datetime": pl.Datetime("us"),
        "passenger_count": pl.Int64,
        "trip_distance": pl.Float64,
        "RatecodeID": pl.Int64,
        "store_and_fwd_flag": pl.String,
        "PULocationID": pl.Int64,
        "payment_type": pl.Int64,
        "total_amount": pl.Float64,
    }
    assert {k: df.schema[k] for k in expected} == expected
    assert df["VendorID"].null_count() == 600
    assert df["store_and_fwd_flag"].null_count() == 600
    raw = pl.read_csv(path, infer_schema=False)
    assert df["trip_distance"].to_list() == raw["trip_distance"].cast(pl.Float64).to_list()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, out.name]  # no leftovers


def test_parquet_accepts_integral_floats_and_rejects_fractions(tmp_path: Path) -> None:
    lines = green_lines(40)
    header = lines[0].split(b",")
    col = header.index(b"passenger_count")
    fields = lines[5].split(b",")
    fields[col] = b"2.0"
    lines[5] = b",".join(fields)
    path = gz(tmp_path, b"\r\n".join(lines) + b"\r\n")
    df = pl.read_parquet(to_parquet(path, GREEN))
    assert df.schema["passenger_count"] == pl.Int64
    assert df["passenger_count"][4] == 2
    fields[col] = b"2.5"
    lines[5] = b",".join(fields)
    path = gz(tmp_path, b"\r\n".join(lines) + b"\r\n")
    with pytest.raises(DataError, match=r"line 6, column passenger_count: '2.5' is not an integer"):
        to_parquet(path, GREEN, force=True)


def test_parquet_rejects_a_bad_timestamp_with_line_and_column(tmp_path: Path) -> None:
    lines = green_lines(10)
    lines[3] = lines[3].replace(b"2020-04", b"04/2020", 1)
    path = gz(tmp_path, b"\r\n".join(lines))
    with pytest.raises(DataError, match="line 4, column lpep_pickup_datetime: '04/2020"):
        to_parquet(path, GREEN)
    assert not parquet_path_for(path).exists()


def test_parquet_of_the_fhv_sample_renames_to_catalogue_columns(tmp_path: Path) -> None:
    path = gz(
        tmp_path, (REAL / "danielyrigney_head.csv").read_bytes(), "fhv_tripdata_2021-06.csv.gz"
    )
    df = pl.read_parquet(to_parquet(path, FHV))
    assert df.columns == [*LINEAGE, *FHV.header]
    assert df.schema["PUlocationID"] == pl.Int64 and df.height == 100
    path = gz(tmp_path, (REAL / "fhv_tripdata.csv").read_bytes(), "fhv_tripdata_2025-01.csv.gz")
    df = pl.read_parquet(to_parquet(path, FHV))
    assert df["DOlocationID"].null_count() == 28  # `94.0` values became 94, blanks null
    assert df["DOlocationID"].drop_nulls().dtype == pl.Int64


@pytest.mark.parametrize(
    ("sample", "taxi", "rows", "no_vendor"),
    [
        ("yellow_tripdata_2020-01.csv", YELLOW, 999, 500),  # its tail rows lack VendorID
        ("rides.csv", YELLOW, 266, 0),
        ("gaikwad_yellow_head.csv", YELLOW, 99, 0),
        ("green_head.csv", GREEN, 99, 0),
    ],
)
def test_real_samples_convert_to_parquet(
    tmp_path: Path, sample: str, taxi: TaxiType, rows: int, no_vendor: int
) -> None:
    path = gz(tmp_path, (REAL / sample).read_bytes(), "sample.csv.gz")
    df = pl.read_parquet(to_parquet(path, taxi, month="2020-01"))
    assert (df.height, df["VendorID"].null_count()) == (rows, no_vendor)
    assert df.schema["congestion_surcharge"] == pl.Float64


def test_binary_content_without_newlines_is_rejected_early(tmp_path: Path) -> None:
    data = b"\r\n".join(green_lines(3)) + b"\r\n" + bytes(range(256)).replace(b"\n", b"") * 20_000
    with pytest.raises(VerifyError, match="line 5: a line longer than 1,048,576 bytes"):
        verify_trip_file(gz(tmp_path, data), GREEN)


def test_an_unclosed_quote_is_reported_not_crashed_on(tmp_path: Path) -> None:
    lines = green_lines(5)
    lines[2] = lines[2].replace(b",N,", b',"N,', 1) + b"x" * 200_000
    with pytest.raises(VerifyError, match="not valid CSV"):
        verify_trip_file(gz(tmp_path, b"\r\n".join(lines)), GREEN)
