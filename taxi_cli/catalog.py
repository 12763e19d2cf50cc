"""The dataset catalogue: taxi types, their files, headers and typed schemas.

One `Column` list per taxi type drives everything downstream: CSV verification, the
Parquet schema, the Postgres and BigQuery DDL and the `unique_row_id` hash. The column
types follow the course's tables (ids as text in Postgres, counts as integer, money and
distance as double precision).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources

from taxi_cli.errors import UsageError

DEFAULT_SOURCE_URL = "https://github.com/DataTalksClub/nyc-tlc-data/releases/download"


class Kind(StrEnum):
    """What a column holds; each storage maps a kind to its own type."""

    ID = "id"  # integer codes kept as text in Postgres (VendorID, PULocationID, ...)
    COUNT = "count"  # integers: passenger_count, payment_type, trip_type
    TIMESTAMP = "timestamp"
    MONEY = "money"  # money and distance: float64 / double precision
    FLAG = "flag"  # short strings: store_and_fwd_flag, SR_Flag
    TEXT = "text"  # free strings: base numbers, zone names


PG_TYPES = {
    Kind.ID: "text",
    Kind.COUNT: "integer",
    Kind.TIMESTAMP: "timestamp",
    Kind.MONEY: "double precision",
    Kind.FLAG: "text",
    Kind.TEXT: "text",
}


@dataclass(frozen=True)
class Column:
    """A CSV column: its header name, its kind, and its lowercase SQL name."""

    name: str
    kind: Kind
    pg_type_override: str | None = None

    @property
    def sql_name(self) -> str:
        return self.name.lower()

    @property
    def pg_type(self) -> str:
        return self.pg_type_override or PG_TYPES[self.kind]


def _cols(spec: str) -> tuple[Column, ...]:
    out = []
    for item in spec.split():
        name, kind = item.split(":")
        out.append(Column(name, Kind(kind)))
    return tuple(out)


@dataclass(frozen=True)
class TaxiType:
    """One of the release's taxi types."""

    name: str
    columns: tuple[Column, ...]
    window: tuple[str, str]  # first and last month known to be released
    pickup: str  # the pickup timestamp column (header name)
    dropoff: str
    hash_columns: tuple[str, ...]  # header names hashed into unique_row_id, in order
    alt_headers: tuple[tuple[str, ...], ...] = ()  # other released spellings, same positions

    @property
    def header(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def accepted_headers(self) -> tuple[tuple[str, ...], ...]:
        return (self.header, *self.alt_headers)

    def file_name(self, month: str) -> str:
        return f"{self.name}_tripdata_{month}.csv.gz"

    def csv_name(self, month: str) -> str:
        """The uncompressed name: the course's `filename` lineage value."""
        return f"{self.name}_tripdata_{month}.csv"

    def window_text(self) -> str:
        return f"{self.window[0]}..{self.window[1]}"


YELLOW = TaxiType(
    name="yellow",
    columns=_cols(
        "VendorID:id tpep_pickup_datetime:timestamp tpep_dropoff_datetime:timestamp "
        "passenger_count:count trip_distance:money RatecodeID:id store_and_fwd_flag:flag "
        "PULocationID:id DOLocationID:id payment_type:count fare_amount:money extra:money "
        "mta_tax:money tip_amount:money tolls_amount:money improvement_surcharge:money "
        "total_amount:money congestion_surcharge:money"
    ),
    window=("2019-01", "2021-07"),
    pickup="tpep_pickup_datetime",
    dropoff="tpep_dropoff_datetime",
    hash_columns=(
        "VendorID",
        "tpep_pickup_datetime",
        "tpep_dropoff_datetime",
        "PULocationID",
        "DOLocationID",
        "fare_amount",
        "trip_distance",
    ),
)

GREEN = TaxiType(
    name="green",
    columns=_cols(
        "VendorID:id lpep_pickup_datetime:timestamp lpep_dropoff_datetime:timestamp "
        "store_and_fwd_flag:flag RatecodeID:id PULocationID:id DOLocationID:id "
        "passenger_count:count trip_distance:money fare_amount:money extra:money "
        "mta_tax:money tip_amount:money tolls_amount:money ehail_fee:money "
        "improvement_surcharge:money total_amount:money payment_type:count trip_type:count "
        "congestion_surcharge:money"
    ),
    window=("2019-01", "2021-07"),
    pickup="lpep_pickup_datetime",
    dropoff="lpep_dropoff_datetime",
    hash_columns=(
        "VendorID",
        "lpep_pickup_datetime",
        "lpep_dropoff_datetime",
        "PULocationID",
        "DOLocationID",
        "fare_amount",
        "trip_distance",
    ),
)

# FHV has no vendor, fare or distance: the hash uses what identifies a trip there.
FHV = TaxiType(
    name="fhv",
    columns=_cols(
        "dispatching_base_num:text pickup_datetime:timestamp dropOff_datetime:timestamp "
        "PUlocationID:id DOlocationID:id SR_Flag:flag Affiliated_base_number:text"
    ),
    window=("2019-01", "2019-12"),
    pickup="pickup_datetime",
    dropoff="dropOff_datetime",
    hash_columns=(
        "dispatching_base_num",
        "pickup_datetime",
        "dropOff_datetime",
        "PUlocationID",
        "DOlocationID",
        "Affiliated_base_number",
    ),
    alt_headers=(
        (
            "dispatching_base_num",
            "pickup_datetime",
            "dropoff_datetime",
            "PULocationID",
            "DOLocationID",
            "SR_Flag",
            "Affiliated_base_number",
        ),
    ),
)

# The DTC fhvhv assets carry the FHV-style 7-column layout (see the reference, 5.1; the
# real head of fhvhv_tripdata_2021-06 in tests/data/real/danielyrigney_head.csv), not the
# TLC's `hvfhs_license_num,...` layout.
FHVHV = TaxiType(
    name="fhvhv",
    columns=_cols(
        "dispatching_base_num:text pickup_datetime:timestamp dropoff_datetime:timestamp "
        "PULocationID:id DOLocationID:id SR_Flag:flag Affiliated_base_number:text"
    ),
    window=("2021-01", "2021-07"),
    pickup="pickup_datetime",
    dropoff="dropoff_datetime",
    hash_columns=(
        "dispatching_base_num",
        "pickup_datetime",
        "dropoff_datetime",
        "PULocationID",
        "DOLocationID",
        "Affiliated_base_number",
    ),
)

TAXIS: dict[str, TaxiType] = {t.name: t for t in (YELLOW, GREEN, FHV, FHVHV)}

ZONES_FILE = "taxi_zone_lookup.csv"
ZONES_COLUMNS = (
    Column("LocationID", Kind.COUNT),
    Column("Borough", Kind.TEXT),
    Column("Zone", Kind.TEXT),
    Column("service_zone", Kind.TEXT),
)
ZONES_ROWS = 265


def taxi_url(base: str, taxi: TaxiType, month: str) -> str:
    return f"{base.rstrip('/')}/{taxi.name}/{taxi.file_name(month)}"


def zones_url(base: str) -> str:
    return f"{base.rstrip('/')}/misc/{ZONES_FILE}"


# ---- month and taxi specs -------------------------------------------------------------

MONTH_FORMS = (
    "accepted forms: 2020-04, 2020-01..2020-06, 2020, 2019..2021, or a comma list of these"
)
TAXI_FORMS = f"accepted: {', '.join(TAXIS)}, a comma list such as yellow,green, or all"

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_YEAR = re.compile(r"^\d{4}$")


def _month_index(month: str) -> int:
    year, mon = month.split("-")
    return int(year) * 12 + int(mon) - 1


def month_from_index(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_range(first: str, last: str) -> list[str]:
    """Every month from `first` to `last`, both included."""
    return [month_from_index(i) for i in range(_month_index(first), _month_index(last) + 1)]


def next_month(month: str) -> str:
    return month_from_index(_month_index(month) + 1)


def parse_months(spec: str) -> list[str]:
    """Parse `2020-04`, `2020-01..2020-06`, `2020`, `2019..2021` or a comma list of these;
    sorted, no repeats."""
    months: set[str] = set()
    for raw in spec.split(","):
        part = raw.strip()
        if _MONTH.match(part):
            months.add(part)
        elif _YEAR.match(part):
            months.update(month_range(f"{part}-01", f"{part}-12"))
        elif ".." in part:
            first, _, last = part.partition("..")
            first, last = first.strip(), last.strip()
            # a year at either end means its first (or last) month: 2019..2021-06
            first = f"{first}-01" if _YEAR.match(first) else first
            last = f"{last}-12" if _YEAR.match(last) else last
            if not (_MONTH.match(first) and _MONTH.match(last)):
                raise UsageError(f"bad month range {part!r}; {MONTH_FORMS}")
            if _month_index(first) > _month_index(last):
                raise UsageError(f"month range {part!r} runs backwards; {MONTH_FORMS}")
            months.update(month_range(first, last))
        else:
            raise UsageError(f"bad month {part!r}; {MONTH_FORMS}")
    return sorted(months)


def parse_taxis(spec: str) -> list[TaxiType]:
    """Parse `green`, `yellow,green` or `all` into taxi types, in catalogue order."""
    names: set[str] = set()
    for raw in spec.split(","):
        part = raw.strip().lower()
        if part == "all":
            names.update(TAXIS)
        elif part in TAXIS:
            names.add(part)
        else:
            raise UsageError(f"unknown taxi type {raw.strip()!r}; {TAXI_FORMS}")
    return [t for name, t in TAXIS.items() if name in names]


def in_window(taxi: TaxiType, month: str) -> bool:
    return _month_index(taxi.window[0]) <= _month_index(month) <= _month_index(taxi.window[1])


@dataclass(frozen=True)
class Partition:
    """One monthly release file of one taxi type: the unit of every load."""

    taxi: TaxiType
    month: str
    explicit: bool = True  # the user named this taxi type (not only via `all`)

    @property
    def name(self) -> str:
        return f"{self.taxi.name} {self.month}"

    @property
    def file_name(self) -> str:
        return self.taxi.file_name(self.month)

    @property
    def csv_name(self) -> str:
        return self.taxi.csv_name(self.month)

    @property
    def in_window(self) -> bool:
        return in_window(self.taxi, self.month)


def named_taxis(spec: str) -> frozenset[str]:
    """The taxi types the spec names itself (`all` names none)."""
    return frozenset(p.strip().lower() for p in spec.split(",")) & frozenset(TAXIS)


def is_zones(spec: str) -> bool:
    return spec.strip().lower() == "zones"


def select(taxis: str, months: str | None) -> list[Partition]:
    """The partitions of a TAXIS MONTHS spec, in month then catalogue order.

    Release windows are a hint, never a wall: a taxi type named explicitly is tried in
    every month asked for (the source answers 404 if it has no such file); only the
    types that `all` brings in are limited to their known windows.
    """
    if not months:
        raise UsageError(f"which months? {MONTH_FORMS}")
    taxi_list = parse_taxis(taxis)
    month_list = parse_months(months)
    named = named_taxis(taxis)
    picked = [
        Partition(t, m, explicit=t.name in named)
        for m in month_list
        for t in taxi_list
        if t.name in named or in_window(t, m)
    ]
    if not picked:
        raise UsageError(
            f"no released month in {months!r} for {taxis!r}; known windows: "
            + ", ".join(f"{t.name} {t.window_text()}" for t in taxi_list)
            + " (name a taxi type to try outside its window)"
        )
    return picked


# ---- release manifest -------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestEntry:
    """Known size and sha256 of one release asset."""

    filename: str
    size: int
    sha256: str


@cache
def manifest() -> dict[str, ManifestEntry]:
    """The shipped release manifest, keyed by asset file name."""
    text = resources.files("taxi_cli.data").joinpath("release-manifest.csv").read_text()
    entries = {}
    for row in csv.DictReader(text.splitlines()):
        entries[row["filename"]] = ManifestEntry(
            row["filename"], int(row["size_bytes"]), row["sha256"]
        )
    return entries
