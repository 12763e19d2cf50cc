"""Opening release CSVs and checking their header (no Polars: the ledger-hit path of
`load-pg` must start fast).

A .csv.gz is inflated by ISA-L (`isal`, ~3x zlib's speed here) when it is installed,
else by zlib; both check every gzip member's CRC-32 and length, so a cached file damaged
after its verification fails the load (`damaged`) instead of loading what it inflates to.
"""

from __future__ import annotations

import csv
import gzip
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, cast

from taxi_cli.errors import DataError

try:  # ISA-L's inflate; optional: zlib is the fallback
    from isal import igzip, isal_zlib

    _GzipFile: Any = igzip.IGzipFile
    _ISAL_ERRORS: tuple[type[BaseException], ...] = (cast(type[BaseException], isal_zlib.error),)
except ImportError:  # pragma: no cover - depends on the install
    _GzipFile = gzip.GzipFile
    _ISAL_ERRORS = ()

HINT = "fix or re-extract the file (--force), or load with --bad-rows quarantine"
# what a damaged or truncated gzip stream raises (BadGzipFile is an OSError)
READ_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error, *_ISAL_ERRORS)


def open_text_lines(path: Path, wrap: Callable[[IO[bytes]], IO[bytes]] | None = None) -> IO[bytes]:
    """The decompressed bytes of a .csv.gz (or a plain .csv); `wrap` sees the file's
    own bytes as they are read (e.g. to hash them)."""
    raw: IO[bytes] = path.open("rb")
    if wrap is not None:
        raw = wrap(raw)
    if path.name.endswith((".gz", ".gz.part")):
        return cast(IO[bytes], _GzipFile(fileobj=raw, mode="rb"))
    return raw


def damaged(name: str, taxi: str, exc: BaseException) -> DataError:
    """The error for a release file whose gzip stream does not check out (CRC, length,
    corrupt deflate data, truncation): nothing of it is loaded; it must be fetched again.
    (Any other OSError is the file not being readable at all, said as such.)"""
    what = " ".join(str(exc).split()) or type(exc).__name__
    month = name.removesuffix(".gz").removesuffix(".csv").rpartition("_")[2]
    again = f"`taxi-cli extract {taxi} {month} --force`"
    if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile):
        return DataError(f"{name}: cannot read the file ({what}); nothing was loaded: {again}")
    return DataError(
        f"{name}: the file is damaged ({what}); nothing of it was loaded: fetch it again "
        f"with {again}"
    )


def check_header(name: str, line: bytes, accepted: tuple[tuple[str, ...], ...], what: str) -> int:
    """Compare line 1 with the accepted headers (case-insensitive); returns the width."""
    text = line.decode("utf-8-sig", errors="replace").strip()
    got = [h.strip().strip('"').lower() for h in next(csv.reader([text]), [])]
    for header in accepted:
        if got == [h.lower() for h in header]:
            return len(header)
    raise DataError(
        f"{name}: line 1: the header does not match the {what} layout "
        f"(expected {','.join(accepted[0])}; got {text[:160]!r}); "
        "check the taxi type, or re-extract the file with --force"
    )
