"""Verification inflates in bounded slices: a small file that inflates to a gigabyte runs
in the same memory as a normal month. Each case verifies in a fresh Python process and
reads that process's peak RSS (`resource.getrusage`), so nothing else is measured.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from taxi_cli import synthetic
from taxi_cli.catalog import GREEN

pytestmark = pytest.mark.slow

GIB = 1 << 30
MIB = 1 << 20
# A normal month verifies in well under this; the unbounded code needed gigabytes.
PEAK_BOUND_MIB = 320

_PROBE = """
import json, resource, sys
from pathlib import Path
from taxi_cli.catalog import GREEN
from taxi_cli.verify import VerifyError, verify_trip_file
try:
    v = verify_trip_file(Path(sys.argv[1]), GREEN)
    result = {"rows": v.rows, "uncompressed": v.uncompressed_bytes}
except VerifyError as exc:
    result = {"error": str(exc), "line": exc.line}
result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(result))
"""


def _verify_in_subprocess(path: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _gzip_of(path: Path, head: bytes, filler: bytes, size: int, tail: bytes = b"") -> Path:
    """`head`, then `filler` repeated to `size` bytes, then `tail`, gzipped (tiny on disk)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = filler * (16 * MIB // len(filler))
    with path.open("wb") as fh:
        fh.write(z.compress(head))
        for _ in range(size // len(block)):
            fh.write(z.compress(block))
        fh.write(z.compress(tail))
        fh.write(z.flush())
    return path


def _header() -> bytes:
    return (",".join(GREEN.header) + "\n").encode()


def _record() -> bytes:
    return (",".join(["1"] * len(GREEN.header)) + "\n").encode()


def test_a_normal_month_sets_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "green_tripdata_2020-04.csv.gz"
    synthetic.write_month(path, GREEN, "2020-04", 200_000)
    result = _verify_in_subprocess(path)
    assert result["rows"] == 200_000
    assert float(str(result["peak_mib"])) < PEAK_BOUND_MIB, result


def test_a_gigabyte_of_blank_lines_then_a_record_is_bounded_and_named(tmp_path: Path) -> None:
    path = _gzip_of(tmp_path / "blank.csv.gz", _header(), b"\n", GIB, _record())
    assert path.stat().st_size < 2 * MIB  # the bomb: ~1 MiB on disk, 1 GiB inflated
    result = _verify_in_subprocess(path)
    assert "empty line inside the file" in str(result["error"]) and result["line"] == 2
    assert float(str(result["peak_mib"])) < PEAK_BOUND_MIB, result


def test_a_gigabyte_of_trailing_blank_lines_is_bounded(tmp_path: Path) -> None:
    path = _gzip_of(tmp_path / "trailing.csv.gz", _header() + _record(), b"\r\n", GIB)
    result = _verify_in_subprocess(path)
    assert result["rows"] == 1 and int(str(result["uncompressed"])) > GIB
    assert float(str(result["peak_mib"])) < PEAK_BOUND_MIB, result


def test_one_huge_line_is_a_clear_error_in_bounded_memory(tmp_path: Path) -> None:
    path = _gzip_of(tmp_path / "line.csv.gz", _header() + b"1,", b"x", GIB)
    result = _verify_in_subprocess(path)
    assert "a line longer than 1,048,576 bytes" in str(result["error"]), result
    assert result["line"] == 2
    assert float(str(result["peak_mib"])) < PEAK_BOUND_MIB, result


def test_one_huge_quoted_line_is_a_clear_error_in_bounded_memory(tmp_path: Path) -> None:
    # a quote sends verification to the exact csv scan: it is bounded the same way
    head = _header() + _record() + b'1,"a,b",' + b"2," * (len(GREEN.header) - 3) + b"3\n1,"
    path = _gzip_of(tmp_path / "quoted.csv.gz", head, b"y", GIB)
    result = _verify_in_subprocess(path)
    assert "a line longer than" in str(result["error"]), result
    assert result["line"] == 4
    assert float(str(result["peak_mib"])) < PEAK_BOUND_MIB, result
