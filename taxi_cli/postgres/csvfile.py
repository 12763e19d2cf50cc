"""Opening release CSVs and checking their header (no Polars: the ledger-hit path of
`load-pg` must start fast)."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path
from typing import IO, cast

from taxi_cli.errors import DataError

HINT = "fix or re-extract the file (--force), or load with --bad-rows quarantine"


def open_text_lines(path: Path) -> IO[bytes]:
    """The decompressed bytes of a .csv.gz (or a plain .csv)."""
    raw = path.open("rb")
    if path.name.endswith(".gz"):
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    return raw


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
