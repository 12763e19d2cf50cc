"""The synthetic month generator: deterministic, release-shaped, fast to make."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from taxi_cli import synthetic
from taxi_cli.catalog import GREEN, TAXIS, YELLOW
from taxi_cli.verify import verify_trip_file


@pytest.mark.parametrize("taxi", list(TAXIS))
def test_every_type_verifies_with_its_exact_header(tmp_path: Path, taxi: str) -> None:
    path = tmp_path / f"{taxi}.csv.gz"
    assert synthetic.write_month(path, taxi, "2021-02", 777) == 777
    text = gzip.decompress(path.read_bytes())
    assert text.split(b"\r\n", 1)[0].decode() == ",".join(TAXIS[taxi].header)
    assert verify_trip_file(path, TAXIS[taxi]).rows == 777


def test_same_arguments_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a, b, c = (tmp_path / d / "green.csv.gz" for d in "abc")
    synthetic.write_month(a, "green", "2020-04", 500, seed=1)
    synthetic.write_month(b, "green", "2020-04", 500, seed=1)
    synthetic.write_month(c, "green", "2020-04", 500, seed=2)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    assert a.read_bytes()[4:8] == synthetic.GZIP_MTIME.to_bytes(4, "little")


def test_vendorless_tail_block(tmp_path: Path) -> None:
    df = synthetic.frame("green", "2020-04", 1000, vendorless_tail=0.25)
    empty = df["VendorID"].is_null()
    assert empty.sum() == 250 and empty[750:].all() and not empty[:750].any()
    tail = df[750:]
    for column in (
        "store_and_fwd_flag",
        "RatecodeID",
        "passenger_count",
        "payment_type",
        "trip_type",
        "congestion_surcharge",
        "ehail_fee",
    ):
        assert tail[column].null_count() == 250, column
    assert tail["lpep_pickup_datetime"].str.ends_with(":00").all()  # whole minutes
    assert df[:750]["passenger_count"].null_count() == 0
    yellow = synthetic.frame("yellow", "2020-04", 100, vendorless_tail=0.1)
    assert yellow["VendorID"].null_count() == 10
    assert yellow["congestion_surcharge"].null_count() == 0  # as in the real yellow tail


def test_values_look_like_the_release(tmp_path: Path) -> None:
    df = synthetic.frame("yellow", "2020-04", 20_000, seed=3)
    pickups = df["tpep_pickup_datetime"]
    assert pickups.str.contains(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$").all()
    outside = (~pickups.str.starts_with("2020-04")).sum()
    assert 1 <= outside <= 20  # a few, not many
    assert "2009-01-01 00:03:41" in pickups.to_list()
    ids = df["PULocationID"].cast(pl.Int64)
    lowest, highest = ids.min(), ids.max()
    assert isinstance(lowest, int) and isinstance(highest, int)
    assert lowest >= 1 and highest <= 265
    distance = df["trip_distance"]
    assert distance.str.contains(r"^(\d+)?\.\d\d$").all()
    assert distance.str.starts_with(".").any()  # `.86`
    fares = df["fare_amount"]
    assert fares.str.contains(r"^-?\d+(\.\d\d?)?$").all()
    assert fares.str.starts_with("-").any()  # negative amounts exist
    assert (fares.str.contains(r"\.\d$")).any() and (~fares.str.contains(r"\.")).any()
    assert not fares.str.contains(r"\.\d0$").any()  # `9.3`, never `9.30`


def test_lf_and_plain_csv(tmp_path: Path) -> None:
    path = tmp_path / "g.csv"
    synthetic.write_month(path, GREEN, "2020-04", 10, gzip_it=False, crlf=False)
    text = path.read_bytes()
    assert b"\r" not in text and text.count(b"\n") == 11


def test_large_months_are_built_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synthetic, "CHUNK_ROWS", 300)
    path = tmp_path / "y.csv.gz"
    synthetic.write_month(path, YELLOW, "2020-04", 1000, vendorless_tail=0.35)
    df = pl.read_csv(path, infer_schema=False)
    assert df.height == 1000
    empty = df["VendorID"].is_null()
    assert empty.sum() == 350 and empty[650:].all()
    assert verify_trip_file(path, YELLOW).rows == 1000


def test_header_override_fakes_another_type(tmp_path: Path) -> None:
    path = tmp_path / "x.csv.gz"
    fake = tuple(f"c{i}" for i in range(len(GREEN.header)))
    synthetic.write_month(path, GREEN, "2020-04", 5, header=fake)
    assert gzip.decompress(path.read_bytes()).startswith(b"c0,c1,")


def test_command_line_entry_point(tmp_path: Path) -> None:
    path = tmp_path / "fhv_tripdata_2019-05.csv.gz"
    synthetic.main(["fhv", "2019-05", "25", str(path), "--seed", "4", "--level", "6"])
    assert verify_trip_file(path, TAXIS["fhv"]).rows == 25
