"""A release CSV as COPY input: checked, row ids computed, in bounded batches.

Each batch of ~8 MB of CSV is parsed by Polars (all columns as text, so the server sees
the file's own spelling of every value), gets `unique_row_id` (rendered as PostgreSQL
renders the typed columns, see `taxi_cli.rowid`, hashed by `md5vec`) and is written
back as CSV for `COPY ... (FORMAT csv)`. Memory stays at a few batches whatever the
file size. The stream remembers which file line each sent row came from, so a COPY
error (`line N` of the stream) can name the line of the file.
"""

from __future__ import annotations

import bisect
import csv
import gzip
import io
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from taxi_cli.catalog import Kind, TaxiType
from taxi_cli.errors import DataError
from taxi_cli.postgres import md5vec
from taxi_cli.postgres.csvfile import HINT, check_header, open_text_lines
from taxi_cli.rowid import pg_float_text, pg_timestamp_text

BLOCK_BYTES = 8 << 20
_PLAIN_TS = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"
_ANY_TS = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d{1,6})?$")
_TYPE_WORDS = {Kind.COUNT: "integer", Kind.MONEY: "number", Kind.TIMESTAMP: "timestamp"}


@dataclass(frozen=True)
class Reject:
    """A row kept out of the load (quarantine mode)."""

    line: int
    reason: str
    raw: str


@dataclass(frozen=True)
class _Block:
    sent_start: int  # index (0-based) of the block's first sent row in the COPY stream
    first_line: int  # file line number of the block's first line
    kept: npt.NDArray[np.int64] | None  # line offsets of sent rows, when some were dropped


class BadRow(DataError):
    """A row that does not fit the layout (reject mode)."""


class TripStream:
    """Iterate `batches()`; afterwards `rows`, `rejects`, `file_line(n)` are valid."""

    def __init__(
        self,
        path: Path,
        taxi: TaxiType,
        *,
        quarantine: bool = False,
        progress: Callable[[int], None] | None = None,
        block_bytes: int = BLOCK_BYTES,
    ) -> None:
        self.path = path
        self.name = path.name
        self.taxi = taxi
        self.quarantine = quarantine
        self.progress = progress
        self.block_bytes = block_bytes
        self.columns = [c.sql_name for c in taxi.columns]
        self.kinds = {c.sql_name: c.kind for c in taxi.columns}
        lowered = [c.lower() for c in taxi.header]
        self.hashed = [self.columns[lowered.index(h.lower())] for h in taxi.hash_columns]
        self.rows = 0
        self.rejects: list[Reject] = []
        self._blocks: list[_Block] = []

    # ---- line bookkeeping ------------------------------------------------------------

    def file_line(self, copy_line: int) -> int:
        """The file line of COPY input line `copy_line` (1-based, no header sent)."""
        index = copy_line - 1
        pos = bisect.bisect_right([b.sent_start for b in self._blocks], index) - 1
        if pos < 0:
            return copy_line + 1
        block = self._blocks[pos]
        offset = index - block.sent_start
        if block.kept is not None and offset < len(block.kept):
            offset = int(block.kept[offset])
        return block.first_line + offset

    def _fail(self, line: int, column: str, value: str | None, what: str) -> BadRow:
        shown = "" if value is None else f' "{value[:80]}"'
        return BadRow(f"{self.name}: line {line}, column {column}{shown}: {what}; {HINT}")

    # ---- the stream ----------------------------------------------------------------------

    def batches(self) -> Iterator[bytes]:
        try:
            with open_text_lines(self.path) as src:
                raw = getattr(src, "fileobj", src)
                width = check_header(
                    self.name, src.readline(), self.taxi.accepted_headers, self.taxi.name
                )
                line = 2
                while True:
                    block = src.read(self.block_bytes)
                    if not block:
                        break
                    if not block.endswith(b"\n"):
                        block += src.readline()
                    if self.progress is not None:
                        self.progress(raw.tell())
                    out, lines = self._block(block, line, width)
                    line += lines
                    if out:
                        yield out
        except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise DataError(
                f"{self.name}: cannot read the file ({exc}); re-extract it with --force"
            ) from exc

    def _block(self, block: bytes, first_line: int, width: int) -> tuple[bytes, int]:
        buf = np.frombuffer(block, dtype=np.uint8)
        ends = np.flatnonzero(buf == 10)
        if len(block) and block[-1:] != b"\n":
            ends = np.append(ends, len(block))
        n_lines = len(ends)
        starts = np.concatenate(([0], ends[:-1] + 1))
        lengths = ends - starts
        # a trailing \r belongs to the line ending (the release files are CRLF)
        has_cr = lengths > 0
        has_cr[has_cr] = buf[ends[has_cr] - 1] == 13
        blank = (lengths - has_cr) == 0
        n_commas = int(np.count_nonzero(buf == 44))
        if n_commas == (width - 1) * int(n_lines - blank.sum()) and b'"' not in block:
            # the common case, checked in one pass: every line has the right width
            fields = np.where(blank, 0, width)
        elif b'"' in block:
            fields = np.array(self._quoted_field_counts(block, n_lines), dtype=np.int64)
        else:
            commas = np.flatnonzero(buf == 44)
            fields = np.diff(np.searchsorted(commas, np.concatenate(([-1], ends)))) + 1
        bad = (fields != width) & ~blank
        drop = blank.copy()
        for i in np.flatnonzero(bad):
            text = self._line_text(block, int(starts[i]), int(ends[i]))
            reason = f"expected {width} fields, found {int(fields[i])}"
            if not self.quarantine:
                raise BadRow(f"{self.name}: line {first_line + int(i)}: {reason}; {HINT}")
            self.rejects.append(Reject(first_line + int(i), reason, text))
            drop[i] = True
        kept: npt.NDArray[np.int64] | None = None
        if drop.any():
            kept = np.flatnonzero(~drop).astype(np.int64)
            block = b"\n".join(block[int(starts[i]) : int(ends[i])] for i in kept)
        df = self._parse(block) if (kept is None or len(kept)) else None
        if df is None or df.height == 0:
            return b"", n_lines
        if self.quarantine:
            df, kept = self._validate(df, first_line, kept, n_lines)
        rid = self._row_ids(df, first_line, kept)
        self._blocks.append(_Block(self.rows, first_line, kept))
        self.rows += df.height
        out = io.BytesIO()
        pl.DataFrame([rid, *df.get_columns()]).write_csv(out, include_header=False)
        return out.getvalue(), n_lines

    @staticmethod
    def _quoted_field_counts(block: bytes, n_lines: int) -> list[int]:
        text = block.decode("utf-8", "replace")
        counts = [len(next(csv.reader([line]), [])) for line in text.split("\n")[:n_lines]]
        return counts + [0] * (n_lines - len(counts))

    @staticmethod
    def _line_text(block: bytes, start: int, end: int) -> str:
        return block[start:end].decode("utf-8", "replace").rstrip("\r")[:1000]

    def _parse(self, block: bytes) -> pl.DataFrame:
        try:
            return pl.read_csv(
                block,
                has_header=False,
                schema=dict.fromkeys(self.columns, pl.String),
                quote_char='"',
            )
        except pl.exceptions.PolarsError as exc:
            raise DataError(f"{self.name}: cannot parse the CSV ({exc}); {HINT}") from exc

    def _line_of(self, row: int, first_line: int, kept: npt.NDArray[np.int64] | None) -> int:
        return first_line + (int(kept[row]) if kept is not None else row)

    # ---- validation (quarantine mode) ------------------------------------------------------

    def _validate(
        self,
        df: pl.DataFrame,
        first_line: int,
        kept: npt.NDArray[np.int64] | None,
        n_lines: int,
    ) -> tuple[pl.DataFrame, npt.NDArray[np.int64] | None]:
        checks: list[tuple[str, pl.Expr]] = []
        for name, kind in self.kinds.items():
            col = pl.col(name)
            if kind is Kind.COUNT:
                parsed = col.str.strip_chars().cast(pl.Int32, strict=False)
            elif kind is Kind.MONEY:
                parsed = col.str.strip_chars().cast(pl.Float64, strict=False)
            elif kind is Kind.TIMESTAMP:
                ok = col.str.contains(_ANY_TS.pattern)
                parsed = (
                    pl.when(ok)
                    .then(col.str.replace("T", " ").str.slice(0, 19))
                    .otherwise(None)
                    .str.strptime(pl.Datetime, "%Y-%m-%d %H:%M:%S", strict=False)
                )
            else:
                continue
            checks.append((name, col.is_not_null() & parsed.is_null()))
        if not checks:
            return df, kept
        flags = df.select([expr.alias(name) for name, expr in checks])
        any_bad = flags.select(pl.any_horizontal(pl.all())).to_series()
        if not any_bad.any():
            return df, kept
        bad_rows = np.flatnonzero(any_bad.to_numpy())
        for row in bad_rows:
            row_flags = flags.row(int(row), named=True)
            column = next(name for name, flag in row_flags.items() if flag)
            value = df[column][int(row)]
            line = self._line_of(int(row), first_line, kept)
            reason = f'column {column}: invalid {_TYPE_WORDS[self.kinds[column]]} "{value}"'
            raw = ",".join("" if v is None else str(v) for v in df.row(int(row)))
            self.rejects.append(Reject(line, reason, raw))
        keep_rows = np.flatnonzero(~any_bad.to_numpy())
        base = kept if kept is not None else np.arange(n_lines, dtype=np.int64)
        return df[keep_rows], base[keep_rows]

    # ---- unique_row_id ----------------------------------------------------------------------

    def _rendered(
        self, df: pl.DataFrame, name: str, first_line: int, kept: npt.NDArray[np.int64] | None
    ) -> pl.Expr:
        kind = self.kinds[name]
        col = pl.col(name)
        if kind is Kind.MONEY:
            mapping = {}
            for value in df[name].drop_nulls().unique().to_list():
                try:
                    if "_" in value:
                        raise ValueError(value)
                    mapping[value] = pg_float_text(value.strip())
                except ValueError:
                    row = int(np.flatnonzero((df[name] == value).fill_null(False).to_numpy())[0])
                    raise self._fail(
                        self._line_of(row, first_line, kept), name, value, "not a number"
                    ) from None
            return col.replace_strict(mapping, default="", return_dtype=pl.String)
        if kind is Kind.TIMESTAMP:
            plain = col.str.contains(_PLAIN_TS)
            odd = df.filter(col.is_not_null() & ~plain.fill_null(True))[name].unique().to_list()
            if not odd:
                return col.fill_null("")
            mapping = {}
            for value in odd:
                if not _ANY_TS.match(value.strip()):
                    row = int(np.flatnonzero((df[name] == value).fill_null(False).to_numpy())[0])
                    raise self._fail(
                        self._line_of(row, first_line, kept), name, value, "not a timestamp"
                    )
                mapping[value] = pg_timestamp_text(value)
            return (
                pl.when(plain)
                .then(col)
                .otherwise(col.replace_strict(mapping, default="", return_dtype=pl.String))
                .fill_null("")
            )
        return col.fill_null("")

    def _row_ids(
        self, df: pl.DataFrame, first_line: int, kept: npt.NDArray[np.int64] | None
    ) -> pl.Series:
        parts = [self._rendered(df, name, first_line, kept) for name in self.hashed]
        message = df.select(pl.concat_str(parts).alias("m")).to_series()
        lens = message.str.len_bytes().to_numpy().astype(np.int64)
        digests = np.empty((len(lens), 16), dtype=np.uint8)
        for width, low, high in ((64, 0, 55), (128, 56, 119)):
            pick = np.flatnonzero((lens >= low) & (lens <= high))
            if not len(pick):
                continue
            group = message if len(pick) == len(lens) else message.gather(pick)
            padded = group.str.pad_end(width, "\0").str.join("").item().encode()
            if len(padded) == len(pick) * width:
                digests[pick] = md5vec.md5_padded(padded, lens[pick], width)
            else:  # non-ASCII text: characters are not bytes; hash one by one
                for i in pick:
                    digests[i] = md5vec.md5_one(str(message[int(i)]).encode())
        for i in np.flatnonzero(lens > 119):
            digests[i] = md5vec.md5_one(str(message[int(i)]).encode())
        hexed = md5vec.hex_digests(digests)
        return pl.Series("unique_row_id", hexed.view("S32").ravel()).cast(pl.String)
