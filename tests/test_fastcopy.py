"""The C fast path of load-pg (`_fastcopy`) == the Python path, row for row; it declines
(None) whatever is not trivially canonical; and its row ids equal PostgreSQL's md5."""

from __future__ import annotations

import gzip
import hashlib
import random
import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest

from taxi_cli.catalog import FHV, FHVHV, GREEN, YELLOW, TaxiType
from taxi_cli.postgres import rows
from taxi_cli.postgres.loader import load_file
from taxi_cli.rowid import hash_plan, row_id
from taxi_cli.synthetic import write_month
from tests.pg_helpers import (
    GREEN_04,
    GREEN_10,
    CopyRow,
    decode_copy_rows,
    md5_mismatches,
    sha256,
    write_gz,
)

# Not importorskip: the extension is optional for installs without a C compiler, but the
# machines that run these tests have one, so a missing build is a failure, not a skip.
try:
    from taxi_cli.postgres import _fastcopy as fastcopy
except ImportError as exc:  # pragma: no cover - only on a broken build
    raise ImportError(
        "taxi_cli.postgres._fastcopy was not built; run `make install` with gcc available"
    ) from exc


def _stream(taxi: TaxiType) -> rows.TripStream:
    return rows.TripStream(Path("x.csv.gz"), taxi)


def _python_rows(taxi: TaxiType, block: bytes, monkeypatch: pytest.MonkeyPatch) -> list[CopyRow]:
    stream = _stream(taxi)
    with monkeypatch.context() as m:
        m.setattr(rows, "_fastcopy", None)
        data, _, _ = stream._block(block, 2, len(taxi.columns))
    return decode_copy_rows(bytes(data))


def _fast(taxi: TaxiType, block: bytes) -> tuple[bytes, int] | None:
    stream = _stream(taxi)
    result: tuple[bytes, int] | None = fastcopy.encode(
        block, stream._fast_kinds, stream._fast_hashed, len(taxi.columns)
    )
    return result


def _blocks(body: bytes, size: int = 1 << 20) -> list[bytes]:
    out = []
    while body:
        cut = body.find(b"\n", size)
        cut = len(body) if cut < 0 else cut + 1
        out.append(body[:cut])
        body = body[cut:]
    return out


def _assert_same(taxi: TaxiType, block: bytes, monkeypatch: pytest.MonkeyPatch) -> int:
    fast = _fast(taxi, block)
    assert fast is not None, "the fast path declined a canonical block"
    data, n = fast
    got = decode_copy_rows(data)
    assert n == len(got)
    expected = _python_rows(taxi, block, monkeypatch)
    assert Counter(got) == Counter(expected)  # the Python path orders rows by shape
    return n


def _body(path: Path) -> bytes:
    raw = path.read_bytes()
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    return data.split(b"\n", 1)[1]


@pytest.mark.parametrize("path", [GREEN_04, GREEN_10], ids=["green-2020-04", "green-2020-10"])
def test_real_green_months_equal_the_python_path(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    total = sum(_assert_same(GREEN, b, monkeypatch) for b in _blocks(_body(path)))
    assert total == {GREEN_04: 35_612, GREEN_10: 95_120}[path]


@pytest.mark.parametrize(
    ("taxi", "month", "crlf"),
    [(YELLOW, "2020-01", True), (FHV, "2019-05", False), (FHVHV, "2021-03", True)],
    ids=["yellow", "fhv", "fhvhv"],
)
def test_synthetic_months_equal_the_python_path(
    taxi: TaxiType, month: str, crlf: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / f"{taxi.name}.csv"
    write_month(path, taxi, month, 20_000, gzip_it=False, crlf=crlf, seed=5)
    total = sum(_assert_same(taxi, b, monkeypatch) for b in _blocks(_body(path), 300_000))
    assert total == 20_000


def _yellow(dist: str = "1.5", fare: str = "8", pickup: str = "2020-07-01 00:25:32") -> str:
    return f"1,{pickup},2020-07-01 00:33:39,1,{dist},1,N,238,75,2,{fare},0.5,0.5,0,0,0.3,9.3,0"


EDGE = [
    _yellow(),
    _yellow(".00", "-0"),
    _yellow("1.50", "-0.00"),
    _yellow("123456789012.34", "0.00"),
    _yellow("0.0001", "999999999999999"),
    _yellow("00012.500", "-.86"),
    _yellow("5.", "-12"),
    _yellow("100000000000000", "0.000123456789012345"),
    _yellow(pickup="2020-02-29 23:59:59"),
    _yellow(pickup="2000-01-01 00:00:00"),
    _yellow(pickup="1999-12-31 23:59:59"),
    ",,,,,,,,,,,,,,,,,",
    "2,2020-07-01 00:00:00,,,,,,,,,,,,,,,,",
    ",,2020-07-01 00:00:00,-2147483648,,2147483647,x,,,007,,,,,,,,",
]


def test_edge_values_equal_the_python_path(monkeypatch: pytest.MonkeyPatch) -> None:
    lf = "\n".join(EDGE).encode()  # no final newline
    crlf = "\r\n".join(EDGE).encode() + b"\r\n"
    mixed = b"".join(line.encode() + (b"\r\n" if i % 2 else b"\n") for i, line in enumerate(EDGE))
    for block in (lf, crlf, mixed):
        assert _assert_same(YELLOW, block, monkeypatch) == len(EDGE)


def test_edge_numbers_hash_as_rowid_renders_them() -> None:
    plan = hash_plan(YELLOW, YELLOW.header)
    fast = _fast(YELLOW, "\n".join(EDGE).encode())
    assert fast is not None
    ids = [r[0] for r in decode_copy_rows(fast[0])]
    assert ids == [row_id(line.split(","), plan).encode() for line in EDGE]


def _random_number(rng: random.Random) -> str:
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 15)))
    point = rng.randint(0, len(digits))
    text = digits[:point] + ("." if point < len(digits) or rng.random() < 0.2 else "")
    text += digits[point:] + "0" * rng.choice((0, 0, 1, 3))
    return ("-" if rng.random() < 0.3 else "") + ("0" * rng.choice((0, 0, 2)) + text)


def test_random_numbers_equal_python_float_and_rowid() -> None:
    """Every canonical number: the float8 is Python's float(text), bit for bit, and the
    row id renders it as `rowid` does; the others decline."""
    rng = random.Random(7)
    plan = hash_plan(YELLOW, YELLOW.header)
    numbers = [_random_number(rng) for _ in range(20_000)]
    taken = declined = 0
    for number in numbers:
        line = _yellow(fare=number)
        fast = _fast(YELLOW, line.encode())
        value = abs(float(number))
        if value >= 1e15 or 0 < value < 1e-4:
            assert fast is None, number
            declined += 1
            continue
        assert fast is not None, number
        (row,) = decode_copy_rows(fast[0])
        assert row[11] == struct.pack(">d", float(number)), number  # fare_amount
        assert row[0] == row_id(line.split(","), plan).encode(), number
        taken += 1
    assert taken > 15_000 and declined > 20


@pytest.mark.parametrize(
    "line",
    [
        _yellow('"1.5"'),  # a quote
        _yellow("1e-05"),  # exponent forms
        _yellow("1e3"),
        _yellow("0.00001"),  # < 1e-4
        _yellow("1000000000000000"),  # >= 1e15
        _yellow("0.1234567890123456"),  # 16 significant digits
        _yellow("1234567890.1234567"),
        _yellow(" 1.5"),  # spaces
        _yellow("+1.5"),
        _yellow("1.5.0"),
        _yellow("."),
        _yellow("-"),
        _yellow("NaN"),
        _yellow("Infinity"),
        _yellow("1_000"),
        _yellow(pickup="2020-07-01T00:25:32"),
        _yellow(pickup="2020-07-01 00:25:32.500"),
        _yellow(pickup="2020-7-01 00:25:32"),
        _yellow(pickup="2020-13-01 00:25:32"),
        _yellow(pickup="2020-00-01 00:25:32"),
        _yellow(pickup="2021-02-29 00:25:32"),
        _yellow(pickup="2020-04-31 00:25:32"),
        _yellow(pickup="2020-07-01 24:00:00"),
        _yellow(pickup="2020-07-01 00:60:00"),
        _yellow(pickup="2020-07-01 00:00:60"),
        _yellow(pickup="not a time"),
        _yellow().replace(":39,1,", ":39,1.0,"),  # integers (passenger_count)
        _yellow().replace(":39,1,", ":39,2147483648,"),
        _yellow().replace(":39,1,", ":39,-2147483649,"),
        _yellow().replace(":39,1,", ":39,-,"),
        _yellow().replace(":39,1,", ":39, 1,"),
        _yellow().replace(":39,1,", ":39,+1,"),
        _yellow() + ",",  # field counts
        _yellow().rsplit(",", 1)[0],
        _yellow().replace("N", "Zürich"),  # non-ASCII
        _yellow().replace("N", "a\tb"),  # control bytes
        _yellow().replace("N", "a\rb"),
    ],
)
def test_non_canonical_blocks_fall_back(line: str) -> None:
    good = _yellow()
    assert _fast(YELLOW, f"{good}\r\n{good}\r\n".encode()) is not None
    assert _fast(YELLOW, f"{good}\r\n{line}\r\n{good}\r\n".encode()) is None


def test_blank_lines_fall_back() -> None:
    good = _yellow()
    assert _fast(YELLOW, f"{good}\n\n{good}\n".encode()) is None
    assert _fast(YELLOW, f"{good}\r\n\r\n".encode()) is None
    assert _fast(YELLOW, f"{good}\n\n".encode()) is None


@pytest.mark.integration
def test_fast_path_load_row_ids_equal_postgresql_md5(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = Counter[str]()
    real = fastcopy.encode

    def counted(
        block: bytes, kinds: bytes, hashed: tuple[int, ...], width: int
    ) -> tuple[bytes, int] | None:
        result = real(block, kinds, hashed, width)
        calls["fast" if result is not None else "fallback"] += 1
        return result

    # rows looks `encode` up on the module at each call, so patching the module reaches it.
    monkeypatch.setattr(fastcopy, "encode", counted)
    path = write_gz(tmp_path / "edge.csv.gz", [",".join(YELLOW.header), *EDGE * 50])
    with psycopg.connect(pg_url, autocommit=True) as conn:
        result = load_file(conn, YELLOW, path, "yellow_tripdata_2020-07.csv", sha256(path))
        assert result.rows == len(EDGE) * 50
        result = load_file(conn, GREEN, GREEN_10, "green_tripdata_2020-10.csv", sha256(GREEN_10))
        assert result.rows == 95_120
        assert calls["fast"] >= 2 and calls["fallback"] == 0
        assert (
            md5_mismatches(conn, "yellow_tripdata", "tpep_pickup_datetime", "tpep_dropoff_datetime")
            == 0
        )
        assert (
            md5_mismatches(conn, "green_tripdata", "lpep_pickup_datetime", "lpep_dropoff_datetime")
            == 0
        )


@pytest.mark.parametrize("n", range(1, 10))
def test_row_ids_hashed_four_at_a_time_equal_the_python_path_for_any_row_count(
    n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ids are computed in lanes of 4 rows; the last 1..3 rows of a block take another road
    lines = [_yellow(f"{i}.5", f"{i + 3}", f"2020-07-01 00:{i:02d}:32") for i in range(n)]
    assert _assert_same(YELLOW, "".join(line + "\r\n" for line in lines).encode(), monkeypatch)


@pytest.mark.parametrize("at", [0, 1, 15, 16, 17, 31, 47, 60])
def test_a_declined_byte_anywhere_in_a_line_falls_back(at: int) -> None:
    # lines are scanned 16 bytes at a time: every offset in and around a chunk counts
    good = _yellow()
    for byte in ("\t", "\x00", "\x7f", "é", '"'):
        line = good[:at] + byte + good[at + 1 :]
        assert _fast(YELLOW, f"{good}\r\n{line}\r\n".encode()) is None, (at, byte)


def test_a_line_over_1_mib_falls_back() -> None:
    long = _yellow().replace(",N,", "," + "N" * (1 << 20) + ",")
    assert _fast(YELLOW, f"{_yellow()}\n{long}\n".encode()) is None


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 9, 2_000])
def test_encode_split_deals_the_rows_of_encode_by_their_id(n: int) -> None:
    """Two COPY streams: ids below '8' to the first, the rest to the second, file order
    kept in each; the same rows and check counts as one stream (rows wait for their ids,
    hashed four at a time, so every count around a lane batch matters)."""
    lines = [_yellow(f"{i}.5", f"{i % 97 - 3}", f"2020-07-01 00:{i % 60:02d}:32") for i in range(n)]
    block = "".join(line + "\r\n" for line in lines).encode()
    stream = _stream(YELLOW)
    kinds, hashed, width = stream._fast_kinds, stream._fast_hashed, len(YELLOW.columns)
    checks = rows._Checks(
        rows.CheckSpec("2020-07", ("75", "238")), stream.columns, YELLOW.pickup, YELLOW.dropoff
    ).c_args
    one = fastcopy.encode(block, kinds, hashed, width, checks)
    two = fastcopy.encode_split(block, kinds, hashed, width, checks, ord("8"))
    assert one is not None and two is not None
    low, high = bytes(two[0]), bytes(two[1])
    made, counts = two[2], two[3]
    assert made == one[1] == n and counts == one[2]
    assert (low, high) == fastcopy.split_rows(one[0], ord("8"))
    ordered = decode_copy_rows(one[0])
    assert decode_copy_rows(low) == [r for r in ordered if r[0] is not None and r[0] < b"8"]
    assert decode_copy_rows(high) == [r for r in ordered if r[0] is not None and r[0] >= b"8"]
    if n >= 100:  # md5 hex is uniform: about half each way
        assert 0.4 < len(decode_copy_rows(low)) / n < 0.6
    plain = fastcopy.encode_split(block, kinds, hashed, width, None, ord("8"))
    assert plain is not None and plain[3] is None
    assert (bytes(plain[0]), bytes(plain[1]), plain[2]) == (low, high, n)


def test_split_rows_refuses_what_is_not_copy_rows() -> None:
    data = fastcopy.encode(f"{_yellow()}\r\n".encode(), *_fast_args(YELLOW))
    assert data is not None
    for broken in (data[0][:-1], data[0] + b"\x00", b"\x00\x00"):
        with pytest.raises(ValueError, match="not binary COPY rows"):
            fastcopy.split_rows(broken, ord("8"))
    assert fastcopy.split_rows(b"", ord("8")) == (b"", b"")


def _fast_args(taxi: TaxiType) -> tuple[bytes, tuple[int, ...], int]:
    stream = _stream(taxi)
    return stream._fast_kinds, stream._fast_hashed, len(taxi.columns)


@pytest.fixture(params=[True, False], ids=["avx2", "portable"])
def md5_lanes(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Row ids hashed 8 at a time with AVX2, and by the portable 4-lane code."""
    was = fastcopy.use_avx2(request.param)
    try:
        yield request.param
    finally:
        fastcopy.use_avx2(was)


@pytest.mark.parametrize("n", [1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 1_000])
def test_both_md5_lane_widths_hash_as_postgresql_does(md5_lanes: bool, n: int) -> None:
    lines = [_yellow(f"{i}.25", f"{i % 50}", f"2020-07-01 00:{i % 60:02d}:32") for i in range(n)]
    block = "".join(line + "\r\n" for line in lines).encode()
    fast = _fast(YELLOW, block)
    assert fast is not None
    ids = [r[0] for r in decode_copy_rows(fast[0])]
    plan = hash_plan(YELLOW, YELLOW.header)
    expected = [row_id(line.split(","), plan).encode() for line in lines]
    assert ids == expected
    # the Parquet path's md5_hex: messages of 0..64 bytes, lanes for those <= 55
    messages = [(f"{i}:" * 40)[: i % 65].encode() for i in range(n)]
    lens = np.array([len(m) for m in messages], dtype=np.int64).tobytes()
    assert fastcopy.md5_hex(b"".join(messages), lens) == b"".join(
        hashlib.md5(m).hexdigest().encode() for m in messages
    )
