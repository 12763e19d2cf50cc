"""Month and taxi specs, release URLs, headers and the shipped manifest."""

from __future__ import annotations

import pytest

from taxi_cli.catalog import (
    DEFAULT_SOURCE_URL,
    FHV,
    FHVHV,
    GREEN,
    TAXIS,
    YELLOW,
    TaxiType,
    in_window,
    manifest,
    month_range,
    next_month,
    parse_months,
    parse_taxis,
    taxi_url,
    zones_url,
)
from taxi_cli.errors import ExitCode, UsageError
from tests.fixtures_mirror import REAL


@pytest.mark.parametrize(
    ("spec", "months"),
    [
        ("2020-04", ["2020-04"]),
        ("2020-01..2020-03", ["2020-01", "2020-02", "2020-03"]),
        ("2019-11..2020-02", ["2019-11", "2019-12", "2020-01", "2020-02"]),
        ("2020", [f"2020-{m:02d}" for m in range(1, 13)]),
        ("2020-03, 2020-01,2020-03", ["2020-01", "2020-03"]),  # sorted, no repeats
        ("2020-12,2021-01..2021-02", ["2020-12", "2021-01", "2021-02"]),
        ("2019..2021", [f"{y}-{m:02d}" for y in (2019, 2020, 2021) for m in range(1, 13)]),
        ("2020-11..2021", ["2020-11", "2020-12"] + [f"2021-{m:02d}" for m in range(1, 13)]),
    ],
)
def test_month_specs(spec: str, months: list[str]) -> None:
    assert parse_months(spec) == months


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("2020-13", "bad month '2020-13'"),
        ("2020-4", "bad month '2020-4'"),
        ("April", "bad month 'April'"),
        ("", "bad month ''"),
        ("2020-01..20", "bad month range '2020-01..20'"),
        ("2020-06..2020-01", "runs backwards"),
    ],
)
def test_bad_month_specs_exit_2_and_show_the_accepted_forms(spec: str, problem: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_months(spec)
    assert info.value.exit_code == ExitCode.USAGE
    assert problem in str(info.value)
    assert "accepted forms: 2020-04, 2020-01..2020-06, 2020, 2019..2021" in str(info.value)


def test_taxi_specs() -> None:
    assert parse_taxis("green") == [GREEN]
    assert parse_taxis("green,yellow") == [YELLOW, GREEN]  # catalogue order
    assert parse_taxis(" Yellow , green ") == [YELLOW, GREEN]
    assert parse_taxis("all") == [YELLOW, GREEN, FHV, FHVHV]
    with pytest.raises(UsageError, match="unknown taxi type 'purple'; accepted: yellow, green"):
        parse_taxis("green,purple")


def test_urls_and_file_names() -> None:
    assert taxi_url(DEFAULT_SOURCE_URL + "/", GREEN, "2020-04") == (
        "https://github.com/DataTalksClub/nyc-tlc-data/releases/download/"
        "green/green_tripdata_2020-04.csv.gz"
    )
    assert zones_url("http://m/x") == "http://m/x/misc/taxi_zone_lookup.csv"
    assert GREEN.csv_name("2020-04") == "green_tripdata_2020-04.csv"


def test_months_and_windows() -> None:
    assert month_range("2020-11", "2021-02") == ["2020-11", "2020-12", "2021-01", "2021-02"]
    assert next_month("2020-12") == "2021-01"
    assert YELLOW.window_text() == GREEN.window_text() == "2019-01..2021-07"
    assert FHV.window_text() == "2019-01..2019-12"
    assert in_window(GREEN, "2021-07") and not in_window(GREEN, "2021-08")


@pytest.mark.parametrize(
    ("sample", "taxi"),
    [
        ("green_head.csv", GREEN),
        ("gaikwad_yellow_head.csv", YELLOW),
        ("fhv_tripdata.csv", FHV),
        ("danielyrigney_head.csv", FHVHV),  # DTC fhvhv 2021-06
        ("danielyrigney_head.csv", FHV),
    ],
)
def test_real_headers_are_accepted_by_their_type(sample: str, taxi: TaxiType) -> None:
    with (REAL / sample).open(newline="") as fh:
        header = tuple(fh.readline().strip().split(","))
    assert header in taxi.accepted_headers


def test_hash_columns_are_columns_of_their_type() -> None:
    for taxi in TAXIS.values():
        assert set(taxi.hash_columns) <= set(taxi.header)
        assert taxi.pickup in taxi.header and taxi.dropoff in taxi.header
        for alt in taxi.alt_headers:
            assert len(alt) == len(taxi.header)


def test_shipped_manifest_has_the_verified_real_files() -> None:
    entries = manifest()
    assert entries["green_tripdata_2020-04.csv.gz"].size == 670_357
    assert entries["green_tripdata_2020-10.csv.gz"].sha256.startswith("7be29f3a")
    assert entries["taxi_zone_lookup.csv"].size == 12_322
