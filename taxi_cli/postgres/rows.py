"""A release CSV as COPY input: checked, row ids computed, in bounded batches.

Each block of ~3 MB of CSV (inflated by zlib in a read-ahead thread) is parsed by
Polars (numbers by the CSV reader, ids and timestamps as text); its numbers and
timestamps are checked (a bad value is reported with its file line, column and value,
or quarantined); it gets `unique_row_id` (the values rendered as PostgreSQL renders the
typed columns, see `taxi_cli.rowid`, hashed by `md5vec`); and it is encoded in binary
COPY format (`pgbinary`). Blocks are made in two threads and taken in file order.
Memory stays at a few blocks whatever the file size. A block of canonical lines (the
common case) is done by the C extension `_fastcopy` instead, in one pass without the GIL;
any block it declines takes the path above, whole.
"""

from __future__ import annotations

import copy
import csv
import gzip
import io
import queue
import re
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from taxi_cli.catalog import Kind, TaxiType
from taxi_cli.errors import DataError
from taxi_cli.postgres import md5vec, pgbinary
from taxi_cli.postgres.csvfile import HINT, check_header, open_text_lines
from taxi_cli.rowid import pg_float_text


class _LazyPolars:
    """Polars, imported on first use: the C fast path needs none of it, and its import
    (~0.35 s) is a tenth of a 1M-row load's wall time."""

    _lock = threading.Lock()
    _module: Any = None

    def __getattr__(self, name: str) -> Any:
        if _LazyPolars._module is None:
            with _LazyPolars._lock:  # two block workers may reach for it at once
                if _LazyPolars._module is None:
                    import polars

                    _LazyPolars._module = polars
        return getattr(_LazyPolars._module, name)


if TYPE_CHECKING:
    import polars as pl
else:
    pl = _LazyPolars()

try:  # the C fast path for canonical blocks; optional (built only where a compiler is)
    from taxi_cli.postgres import _fastcopy
except ImportError:  # pragma: no cover - depends on the build
    _fastcopy = None  # type: ignore[assignment]

BLOCK_BYTES = 3 << 20  # ~25 MB of working memory per MB of block, per worker: RSS < 300 MB
WORKERS = 2  # blocks made at once (and kept in memory at once)
_ANY_TS = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d{1,6})?$")
_TYPE_WORDS = {Kind.COUNT: "integer", Kind.MONEY: "number", Kind.TIMESTAMP: "timestamp"}
_WIRE = {Kind.COUNT: ">i4", Kind.MONEY: ">f8", Kind.TIMESTAMP: ">i8"}
_UNIX_EPOCH = datetime(1970, 1, 1)
_FAST_KINDS = {Kind.COUNT: b"C", Kind.MONEY: b"M", Kind.TIMESTAMP: b"S"}  # else b"T" (text)


def _iso_micros(value: str) -> int | None:
    """Unix microseconds of `YYYY-MM-DD[ T]HH:MM:SS[.ffffff]`, or None."""
    text = value.strip()
    if not _ANY_TS.match(text):
        return None
    try:
        stamp = datetime.fromisoformat(text.replace("T", " "))
    except ValueError:
        return None
    return (stamp - _UNIX_EPOCH) // timedelta(microseconds=1)


def _polars_type(kind: Kind) -> type[pl.DataType]:
    """The Polars type a column is read as: numbers typed by the reader, the rest text."""
    return {Kind.COUNT: pl.Int32, Kind.MONEY: pl.Float64}.get(kind, pl.String)


_DOUBLE_TEXT: dict[int, bytes] = {}  # bit pattern -> PostgreSQL's text; shared by blocks


def _double_texts(bits: npt.NDArray[np.int64]) -> list[bytes]:
    """PostgreSQL's text of each double (given by bit pattern), cached across blocks."""
    if len(_DOUBLE_TEXT) > 1 << 20:
        _DOUBLE_TEXT.clear()
    out = []
    for b in bits.tolist():
        text = _DOUBLE_TEXT.get(b)
        if text is None:
            value = float(np.int64(b).view(np.float64))
            text = _DOUBLE_TEXT[b] = pg_float_text(repr(value)).encode()
        out.append(text)
    return out


def _pg_doubles(series: pl.Series) -> pl.Series:
    """PostgreSQL's text of each double ('' for NULL), rendered once per distinct value.
    Distinct by bit pattern, so -0 and 0 stay apart as PostgreSQL prints them."""
    nulls = series.is_null().to_numpy()
    bits = series.fill_null(0.0).to_numpy().view(np.int64)
    distinct, inverse = np.unique(bits, return_inverse=True)
    texts = [t.decode() for t in _double_texts(distinct)]
    rendered = pl.Series(texts, dtype=pl.String).gather(inverse.reshape(-1))
    if nulls.any():
        rendered = rendered.scatter(np.flatnonzero(nulls), "")
    return rendered


def _pg_timestamp(pg_micros: int) -> str:
    """PostgreSQL's text form of a timestamp (microseconds since 2000-01-01)."""
    stamp = _UNIX_EPOCH + timedelta(microseconds=pg_micros + pgbinary.PG_EPOCH_US)
    text = f"{stamp:%Y-%m-%d %H:%M:%S}"
    return text + (f".{stamp.microsecond:06d}".rstrip("0") if stamp.microsecond else "")


def _text_field(series: pl.Series) -> pgbinary.Text:
    """A text column as fixed-width bytes plus byte lengths (-1 for NULL)."""
    lengths = series.str.len_bytes().fill_null(-1).to_numpy().astype(np.int64)
    width = max(1, int(lengths.max()) if len(lengths) else 1)
    joined = series.fill_null("").str.pad_end(width, "\0").str.join("").item().encode()
    if len(joined) == width * len(series):
        return pgbinary.Text(np.frombuffer(joined, dtype=f"S{width}"), lengths)
    # non-ASCII text: characters are not bytes, so pad per value
    encoded = [(v or "").encode() for v in series.to_list()]
    width = max(1, max(len(e) for e in encoded))
    return pgbinary.Text(np.array(encoded, dtype=f"S{width}"), lengths)


class _ReadAhead(io.RawIOBase):
    """Reads (and so decompresses) the source in a thread, a few MB ahead of the blocks."""

    def __init__(self, src: IO[bytes], chunk: int = 1 << 20, ahead: int = 8) -> None:
        super().__init__()
        self._chunks: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=ahead)
        self._buf = bytearray()
        self._eof = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(src, chunk), name="taxi-cli-gunzip", daemon=True
        )
        self._thread.start()

    def _run(self, src: IO[bytes], chunk: int) -> None:
        while not self._stopped.is_set():
            try:
                data: bytes | BaseException = src.read(chunk)
            except BaseException as exc:  # handed to the reading thread
                data = exc
            while not self._stopped.is_set():
                try:
                    self._chunks.put(data, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if not data or isinstance(data, BaseException):
                return

    def _fill(self, until: Callable[[], bool]) -> None:
        while not self._eof and not until():
            data = self._chunks.get()
            if isinstance(data, BaseException):
                raise data
            if not data:
                self._eof = True
            self._buf += data

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            self._fill(lambda: False)
            size = len(self._buf)
        self._fill(lambda: len(self._buf) >= size)
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out

    def readline(self, size: int | None = -1) -> bytes:
        self._fill(lambda: b"\n" in self._buf)
        end = self._buf.find(b"\n")
        end = len(self._buf) if end < 0 else end + 1
        return self.read(end)

    def readable(self) -> bool:
        return True

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()  # before the source is closed under it


@contextmanager
def _decompressed(path: Path) -> Iterator[tuple[IO[bytes], Callable[[], int]]]:
    """The CSV bytes, and how far into the file (compressed bytes) we are. zlib inflates
    in the read-ahead thread (it releases the GIL): less CPU than a gzip process and a
    pipe, and decompression still overlaps the parsing."""
    with open_text_lines(path) as src:
        raw = getattr(src, "fileobj", src)
        size = path.stat().st_size
        ahead = _ReadAhead(src)
        try:
            yield cast(IO[bytes], ahead), lambda: min(raw.tell(), size)
        finally:
            ahead.stop()


@dataclass(frozen=True)
class Reject:
    """A row kept out of the load (quarantine mode)."""

    line: int
    reason: str
    raw: str


class BadRow(DataError):
    """A row that does not fit the layout (reject mode)."""


class TripStream:
    """Iterate `batches()` (binary COPY data); afterwards `rows` and `rejects` are set."""

    def __init__(
        self,
        path: Path,
        taxi: TaxiType,
        *,
        quarantine: bool = False,
        progress: Callable[[int], None] | None = None,
        block_bytes: int = BLOCK_BYTES,
        workers: int = WORKERS,
    ) -> None:
        self.path = path
        self.name = path.name
        self.taxi = taxi
        self.quarantine = quarantine
        self.progress = progress
        self.block_bytes = block_bytes
        self.workers = max(1, workers)
        self.columns = [c.sql_name for c in taxi.columns]
        self.kinds = {c.sql_name: c.kind for c in taxi.columns}
        lowered = [c.lower() for c in taxi.header]
        self.hashed = [self.columns[lowered.index(h.lower())] for h in taxi.hash_columns]
        self.rows = 0
        self.rejects: list[Reject] = []
        self._bad_columns: dict[str, npt.NDArray[np.bool_]] = {}
        self._odd: dict[str, npt.NDArray[np.bool_]] = {}  # timestamps not in PG's spelling
        self._typed: dict[str, tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]] = {}
        self._fast_kinds = b"".join(_FAST_KINDS.get(self.kinds[c], b"T") for c in self.columns)
        self._fast_hashed = tuple(self.columns.index(c) for c in self.hashed)

    # ---- errors ---------------------------------------------------------------------------

    def _fail(self, line: int, column: str, value: str | None, what: str) -> BadRow:
        shown = "" if value is None else f' "{value[:80]}"'
        return BadRow(f"{self.name}: line {line}, column {column}{shown}: {what}; {HINT}")

    # ---- the stream ----------------------------------------------------------------------

    def batches(self) -> Iterator[bytes]:
        """Blocks are split on line boundaries here and made in `workers` threads (Polars
        and numpy release the GIL); results are taken in file order, so the first bad
        row reported is the first in the file and rejects keep file order."""
        try:
            with (
                _decompressed(self.path) as (src, position),
                ThreadPoolExecutor(self.workers, thread_name_prefix="taxi-cli-block") as pool,
            ):
                width = check_header(
                    self.name, src.readline(), self.taxi.accepted_headers, self.taxi.name
                )
                yield pgbinary.SIGNATURE
                pending: deque[Future[tuple[bytes, int, list[Reject]]]] = deque()
                try:
                    line = 2
                    while True:
                        block = src.read(self.block_bytes)
                        if not block:
                            break
                        if not block.endswith(b"\n"):
                            block += src.readline()
                        if self.progress is not None:
                            self.progress(position())
                        pending.append(pool.submit(self._own_block, block, line, width))
                        line += block.count(b"\n") + (not block.endswith(b"\n"))
                        while len(pending) >= self.workers:
                            out = self._finish(pending.popleft())
                            if out:
                                yield out
                    while pending:
                        out = self._finish(pending.popleft())
                        if out:
                            yield out
                finally:
                    for future in pending:
                        future.cancel()
                yield pgbinary.TRAILER
        except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise DataError(
                f"{self.name}: cannot read the file ({exc}); re-extract it with --force"
            ) from exc

    def _own_block(
        self, block: bytes, first_line: int, width: int
    ) -> tuple[bytes, int, list[Reject]]:
        """`_block` on a copy of this stream: per-block state stays in the worker."""
        worker = copy.copy(self)
        worker.rows = 0
        worker.rejects = []
        out, _ = worker._block(block, first_line, width)
        return out, worker.rows, sorted(worker.rejects, key=lambda r: r.line)

    def _finish(self, future: Future[tuple[bytes, int, list[Reject]]]) -> bytes:
        out, rows, rejects = future.result()
        self.rows += rows
        self.rejects.extend(rejects)
        return out

    def _block(self, block: bytes, first_line: int, width: int) -> tuple[bytes, int]:
        if _fastcopy is not None and width == len(self.columns) and b'"' not in block:
            # C, GIL released: canonical lines only; anything else (a bad or odd value,
            # a blank line, a wrong width) gives None and the whole block goes below
            fast = _fastcopy.encode(block, self._fast_kinds, self._fast_hashed, width)
            if fast is not None:
                self.rows += fast[1]
                return fast[0], fast[1]
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
                if i > 0:  # a bad value on an earlier line is the first error
                    self._block(block[: int(starts[i])], first_line, width)
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
        typed, bad = self._convert(df)
        if bad.any():
            df, typed, kept = self._bad_values(df, typed, bad, first_line, kept, n_lines)
            if df.height == 0:
                return b"", n_lines
        self._typed = typed
        wire: list[pgbinary.Field] = [self._row_ids(df, first_line, kept)]
        for name in self.columns:
            if name in typed:
                values, nulls = typed[name]
                wire.append(pgbinary.Fixed(values, nulls, _WIRE[self.kinds[name]]))
            else:
                wire.append(_text_field(df[name]))
        self.rows += df.height
        return pgbinary.encode(wire, df.height), n_lines

    @staticmethod
    def _quoted_field_counts(block: bytes, n_lines: int) -> list[int]:
        text = block.decode("utf-8", "replace")
        counts = [len(next(csv.reader([line]), [])) for line in text.split("\n")[:n_lines]]
        return counts + [0] * (n_lines - len(counts))

    @staticmethod
    def _line_text(block: bytes, start: int, end: int) -> str:
        return block[start:end].decode("utf-8", "replace").rstrip("\r")[:1000]

    def _parse(self, block: bytes) -> pl.DataFrame:
        """Numbers parsed by the CSV reader itself (no text copies of them); when any
        value does not parse, the block is read again as text to find and name it."""
        typed = {c: _polars_type(k) for c, k in self.kinds.items()}
        try:
            return pl.read_csv(block, has_header=False, schema=typed, quote_char='"')
        except pl.exceptions.PolarsError:
            pass
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

    # ---- typed values, bad values -------------------------------------------------------

    def _convert(
        self, df: pl.DataFrame
    ) -> tuple[dict[str, tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]], npt.NDArray[np.bool_]]:
        """Numeric columns as numpy (values, NULL mask), and which rows hold a bad value."""
        # one select for every column: values, NULLs, failures, odd timestamp spellings
        exprs: list[pl.Expr] = []
        names = []
        for name, kind in self.kinds.items():
            if kind not in _WIRE:
                continue
            col = pl.col(name)
            if df.schema[name] != pl.String:  # parsed by the CSV reader already
                conv = col
            elif kind is Kind.COUNT:
                conv = col.cast(pl.Int32, strict=False)
            elif kind is Kind.MONEY:
                conv = col.cast(pl.Float64, strict=False)
            else:
                parsed = col.str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S", strict=False)
                conv = parsed.dt.epoch("us") - pgbinary.PG_EPOCH_US
            names.append(name)
            exprs += [
                conv.fill_null(0).alias(name),
                col.is_null().alias(f"{name}\0null"),
                (conv.is_null() & col.is_not_null()).alias(f"{name}\0failed"),
            ]
            if kind is Kind.TIMESTAMP:  # PostgreSQL's own spelling hashes as it is
                exprs.append((col.str.len_bytes().fill_null(19) != 19).alias(f"{name}\0odd"))
        converted = df.select(exprs)
        typed = {}
        bad = np.zeros(df.height, dtype=np.bool_)
        self._bad_columns = {}
        self._odd = {}
        for name in names:
            kind = self.kinds[name]
            nulls = converted[f"{name}\0null"].to_numpy()
            failed = converted[f"{name}\0failed"].to_numpy().copy()
            values = converted[name].to_numpy()
            if kind is Kind.TIMESTAMP:
                self._odd[name] = converted[f"{name}\0odd"].to_numpy() | failed
            if failed.any():
                values = values.copy()
                raw = df[name]
            if kind is Kind.TIMESTAMP:
                for i in np.flatnonzero(failed):  # 'T' separator, fractional seconds
                    micros = _iso_micros(str(raw[int(i)]))
                    if micros is not None:
                        values[i], failed[i] = micros - pgbinary.PG_EPOCH_US, False
            elif failed.any():  # surrounding spaces are fine for PostgreSQL too
                dtype = pl.Int32 if kind is Kind.COUNT else pl.Float64
                retry = raw.filter(pl.Series(failed)).str.strip_chars().cast(dtype, strict=False)
                where = np.flatnonzero(failed)
                ok = retry.is_not_null().to_numpy()
                values[where[ok]] = retry.drop_nulls().to_numpy()
                failed[where[ok]] = False
            typed[name] = (values, nulls)
            self._bad_columns[name] = failed
            bad |= failed
        return typed, bad

    def _bad_values(
        self,
        df: pl.DataFrame,
        typed: dict[str, tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]],
        bad: npt.NDArray[np.bool_],
        first_line: int,
        kept: npt.NDArray[np.int64] | None,
        n_lines: int,
    ) -> tuple[
        pl.DataFrame,
        dict[str, tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]],
        npt.NDArray[np.int64],
    ]:
        """Reject mode: fail on the first bad value. Quarantine: record and drop the rows."""
        for row in np.flatnonzero(bad):
            column = next(c for c in self.columns if c in typed and self._bad_columns[c][row])
            value = str(df[column][int(row)])
            line = self._line_of(int(row), first_line, kept)
            what = f"invalid {_TYPE_WORDS[self.kinds[column]]}"
            if not self.quarantine:
                raise self._fail(line, column, value, what)
            raw = ",".join("" if v is None else str(v) for v in df.row(int(row)))
            self.rejects.append(Reject(line, f'column {column}: {what} "{value}"', raw))
        keep = ~bad
        base = kept if kept is not None else np.arange(n_lines, dtype=np.int64)
        kept_typed = {k: (v[keep], nulls[keep]) for k, (v, nulls) in typed.items()}
        self._odd = {k: mask[keep] for k, mask in self._odd.items()}
        return df.filter(pl.Series(keep)), kept_typed, base[keep]

    # ---- unique_row_id ----------------------------------------------------------------------

    def _rendered(
        self, df: pl.DataFrame, name: str, first_line: int, kept: npt.NDArray[np.int64] | None
    ) -> pl.Expr:
        kind = self.kinds[name]
        col = pl.col(name)
        if kind is Kind.MONEY and df.schema[name] == pl.Float64:
            return pl.lit(_pg_doubles(df[name]))
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
            odd = np.flatnonzero(self._odd[name])
            if not len(odd):
                return col.fill_null("")
            micros = self._typed[name][0]
            rendered = [_pg_timestamp(int(micros[i])) for i in odd]
            fixed = df[name].scatter(odd, rendered)
            return pl.lit(fixed).fill_null("")
        return col.fill_null("")

    def _row_ids(
        self, df: pl.DataFrame, first_line: int, kept: npt.NDArray[np.int64] | None
    ) -> pgbinary.Text:
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
        return pgbinary.Text(hexed.view("S32").ravel(), np.full(len(lens), 32, dtype=np.int64))
