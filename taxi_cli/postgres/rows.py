"""A release CSV as COPY input: checked, row ids computed, in bounded batches.

Guarantee: every row written is what PostgreSQL makes of the same CSV text (values and
the course's `unique_row_id`), or it is a bad row (named, or quarantined), never stored
as something else; a file whose gzip CRC or length fails loads nothing.

Each block of ~3 MB of CSV (inflated by ISA-L or zlib in a read-ahead thread, cut at a
record boundary: a quoted field may span lines) is parsed by Polars as text; its typed
values are converted under PostgreSQL's rules (`pgtext`; plain forms in bulk) and
checked (a bad value is reported with its file line, column and value, or quarantined);
it gets `unique_row_id` (the values rendered as PostgreSQL's `::text` renders them,
hashed by `md5vec`); and it is encoded in binary COPY format (`pgbinary`). Blocks are
made in two threads and taken in file order. Memory stays at a few blocks whatever the
file size. A block of canonical lines (the common case) is done by the C extension
`_fastcopy` instead, in one pass without the GIL; any block it declines takes the path
above, whole.

With `scan`, the pass also measures what verifying the file needs (`scanned()`): the
sha256 of the compressed bytes as they are read, their count, the inflated bytes and
the records. A first download is then verified by its load alone (`Extracted.settle`).
"""

from __future__ import annotations

import copy
import io
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from taxi_cli import quality
from taxi_cli.catalog import Kind, TaxiType
from taxi_cli.errors import DataError
from taxi_cli.hashed_reader import HashingReader
from taxi_cli.model import Scanned
from taxi_cli.postgres import md5vec, pgbinary, pgtext
from taxi_cli.postgres.csvfile import HINT, READ_ERRORS, check_header, damaged, open_text_lines


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


def can_split() -> bool:
    """Whether a stream can be `split` in two (the C extension deals the rows out)."""
    return _fastcopy is not None


WORKERS = 2  # blocks made at once (and kept in memory at once)
MAX_RECORD = 1 << 20  # a quoted field may span lines, but no record is longer than this
_UNCLOSED = "a quoted field is not closed"
_TOO_LONG = f"a record longer than {MAX_RECORD:,} bytes (not a trip file?)"
_FATAL = (_UNCLOSED, _TOO_LONG)
_WIRE = {Kind.COUNT: ">i4", Kind.MONEY: ">f8", Kind.TIMESTAMP: ">i8"}
_FAST_KINDS = {Kind.COUNT: b"C", Kind.MONEY: b"M", Kind.TIMESTAMP: b"S"}  # else b"T" (text)
# Values read in bulk by Polars; each form is one whose Polars value is PostgreSQL's (no
# exponent: nothing can overflow or underflow; timestamps only in PostgreSQL's own
# spelling, year >= 1000). Everything else is read value by value by `pgtext`.
_BULK = {
    Kind.COUNT: r"^-?[0-9]{1,9}$",
    Kind.MONEY: r"^[+-]?([0-9]{1,20}\.?[0-9]{0,20}|\.[0-9]{1,20})$",
    Kind.TIMESTAMP: r"^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2} ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$",
}
_SLOW: dict[Kind, Callable[[str], float | int]] = {
    Kind.COUNT: pgtext.parse_int4,
    Kind.MONEY: pgtext.parse_float8,
    Kind.TIMESTAMP: pgtext.parse_timestamp,
}


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
            text = _DOUBLE_TEXT[b] = pgtext.float8_text(value).encode()
        out.append(text)
    return out


def _pg_doubles(values: npt.NDArray[np.float64], nulls: npt.NDArray[np.bool_]) -> pl.Series:
    """PostgreSQL's text of each double ('' for NULL), rendered once per distinct value.
    Distinct by bit pattern, so -0 and 0 stay apart as PostgreSQL prints them."""
    bits = np.where(nulls, 0.0, values).astype(np.float64).view(np.int64)
    distinct, inverse = np.unique(bits, return_inverse=True)
    texts = [t.decode() for t in _double_texts(distinct)]
    rendered = pl.Series(texts, dtype=pl.String).gather(inverse.reshape(-1))
    if nulls.any():
        rendered = rendered.scatter(np.flatnonzero(nulls), "")
    return rendered


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


def _count_lines(block: bytes) -> int:
    """Lines in `block` (a last one without its newline counts), numpy-fast."""
    newlines = int(np.count_nonzero(np.frombuffer(block, dtype=np.uint8) == 10))
    return newlines + (not block.endswith(b"\n"))


def _open_quote(block: bytes) -> bool:
    """Whether `block` (from a record start) ends inside a quoted field. As in
    PostgreSQL's CSV reader, every quote toggles quoting (an escaped `""` twice)."""
    return block.count(b'"') % 2 == 1


class _ReadAhead(io.RawIOBase):
    """Reads (and so decompresses) the source in a thread, a few MB ahead of the blocks."""

    def __init__(self, src: IO[bytes], chunk: int = 1 << 20, ahead: int = 8) -> None:
        super().__init__()
        self._chunks: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=ahead)
        self._pieces: deque[bytes] = deque()
        self._off = 0  # into the first piece
        self._avail = 0  # bytes buffered (after the offset)
        self._eof = False
        self.inflated = 0  # bytes taken from the source
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

    def _more(self) -> bool:
        """Take the next chunk from the thread; False at the end of the data."""
        if self._eof:
            return False
        data = self._chunks.get()
        if isinstance(data, BaseException):
            raise data
        if not data:
            self._eof = True
            return False
        self.inflated += len(data)
        self._pieces.append(data)
        self._avail += len(data)
        return True

    def _find_newline(self, start: int, stop: int) -> int:
        """Offset of the first newline in [start, stop) of the buffered data, or -1."""
        base = -self._off
        for piece in self._pieces:
            end = base + len(piece)
            if end > start:
                lo = max(start - base, 0)
                hit = piece.find(b"\n", lo, max(lo, stop - base))
                if hit >= 0:
                    return base + hit
            if end >= stop:
                break
            base = end
        return -1

    def _take(self, n: int) -> bytes:
        """The first n buffered bytes, copied once."""
        n = min(n, self._avail)
        first = self._pieces[0] if self._pieces else b""
        if self._off + n <= len(first):  # within one chunk
            out = first[self._off : self._off + n]
        else:
            parts: list[bytes | memoryview] = []
            need, off = n, self._off
            for piece in self._pieces:
                part = memoryview(piece)[off : off + need]
                parts.append(part)
                need -= len(part)
                off = 0
                if not need:
                    break
            out = b"".join(parts)
        self._avail -= n
        self._off += n
        while self._pieces and self._off >= len(self._pieces[0]):
            self._off -= len(self._pieces.popleft())
        return out

    def read(self, size: int = -1) -> bytes:
        while (size < 0 or self._avail < size) and self._more():
            pass
        return self._take(self._avail if size < 0 else size)

    def read_lines(self, size: int, limit: int) -> bytes:
        """About `size` bytes ending with a whole line (at most `size + limit`)."""
        while self._avail < size and self._more():
            pass
        start = max(size - 1, 0)
        while True:
            stop = min(self._avail, size + limit)
            hit = self._find_newline(start, stop)
            if hit >= 0:
                return self._take(hit + 1)
            if stop >= size + limit or not self._more():
                return self._take(stop)
            start = stop

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else 1 << 62
        return self.read_lines(1, limit - 1) if limit > 0 else b""

    def readable(self) -> bool:
        return True

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()  # before the source is closed under it


@contextmanager
def _decompressed(
    path: Path, *, hashed: bool = False
) -> Iterator[tuple[_ReadAhead, Callable[[], int], HashingReader | None]]:
    """The CSV bytes, how far into the file (compressed bytes) we are, and with `hashed`
    what hashes them as read. zlib inflates in the read-ahead thread (it releases the
    GIL): less CPU than a gzip process and a pipe, and decompression overlaps parsing."""
    hashing: list[HashingReader] = []

    def wrap(raw: IO[bytes]) -> IO[bytes]:
        hashing.append(HashingReader(raw))
        return cast(IO[bytes], hashing[0])

    with open_text_lines(path, wrap=wrap if hashed else None) as src:
        raw = getattr(src, "fileobj", src)
        size = path.stat().st_size
        ahead = _ReadAhead(src)
        try:
            yield ahead, lambda: min(raw.tell(), size), hashing[0] if hashing else None
        finally:
            ahead.stop()


@dataclass(frozen=True)
class Reject:
    """A row kept out of the load (quarantine mode)."""

    line: int
    reason: str
    raw: str


# one block's COPY bytes, rows written, rows rejected, data records, and check counts
Piece = bytes | memoryview  # binary COPY data (a view: of a buffer malloc reuses)
# a block made: its rows for the first COPY stream and for the second (`split`), the rows
# written, rejects, records read and check counts
_Made = tuple[Piece, Piece, int, list[Reject], int, tuple[int, ...]]
# the data checks in the order `_fastcopy` counts them: quality.CHECKS's order
CHECKS = tuple(quality.CHECKS)
_NO_COUNTS: tuple[int, ...] = (0, 0, 0, 0, 0)


@dataclass(frozen=True)
class CheckSpec:
    """What the data checks of a load need to know: the file's month (None: no month to
    be outside of) and the zone ids that are known, as text (`reconcile.known_zone_ids`)."""

    month: str | None
    known_zones: tuple[str, ...]


class _Checks:
    """The data checks counted while the rows are made, on the values as sent: what
    the rows of the file in the table hold, without a scan of them after the COPY."""

    def __init__(self, spec: CheckSpec, columns: list[str], pickup: str, dropoff: str) -> None:
        lowered = [c.lower() for c in columns]
        wanted = [pickup, dropoff, "fare_amount", "total_amount", "passenger_count"]
        wanted += ["pulocationid", "dolocationid"]
        at = [lowered.index(w.lower()) if w.lower() in lowered else -1 for w in wanted]
        self.pos: tuple[int, int, int, int, int, int, int] = (
            at[0],
            at[1],
            at[2],
            at[3],
            at[4],
            at[5],
            at[6],
        )
        self.cols = [columns[i] if i >= 0 else None for i in at]  # the same, by name
        self.start, self.end = _month_bounds(spec.month)
        ids = [int(z) for z in spec.known_zones if z.isdigit() and str(int(z)) == z]
        known = bytearray(max(ids, default=-1) + 1)
        for i in ids:
            known[i] = 1
        self.known_text = list(spec.known_zones)
        self.c_args: tuple[int, int, int, int, int, int, int, int, int, bytes] = (
            *self.pos,
            self.start,
            self.end,
            bytes(known),
        )
        p, d, fare, total, pc, pu, do = self.pos
        self.present = (
            p >= 0 and spec.month is not None,
            p >= 0 and d >= 0,
            fare >= 0 and total >= 0,
            pc >= 0,
            pu >= 0 and do >= 0,
        )

    def result(self, counts: tuple[int, ...]) -> dict[str, int]:
        return {name: n for name, n, on in zip(CHECKS, counts, self.present, strict=True) if on}

    def of_rows(
        self,
        df: pl.DataFrame,
        typed: dict[str, tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]],
    ) -> tuple[int, ...]:
        """The counts over rows made by the Python path (typed values as sent)."""
        p, d, fare, total, pc, pu, do = self.cols
        counts = [0, 0, 0, 0, 0]
        if p is not None:
            pv, pnull = typed[p]
            counts[0] = int(np.count_nonzero(~pnull & ((pv < self.start) | (pv >= self.end))))
            if d is not None:
                dv, dnull = typed[d]
                counts[1] = int(np.count_nonzero(~pnull & ~dnull & (dv < pv)))
        if fare is not None and total is not None:
            fv, fnull = typed[fare]
            tv, tnull = typed[total]
            counts[2] = int(np.count_nonzero((~fnull & (fv < 0)) | (~tnull & (tv < 0))))
        if pc is not None:
            counts[3] = int(np.count_nonzero(typed[pc][1]))
        if pu is not None and do is not None:

            def unknown(name: str) -> pl.Expr:
                col = pl.col(name)
                return col.is_not_null() & ~col.is_in(self.known_text)

            counts[4] = int(df.select((unknown(pu) | unknown(do)).sum()).item())
        return tuple(counts)


def _month_bounds(month: str | None) -> tuple[int, int]:
    """[start, end) of the month as PostgreSQL timestamps (microseconds since 2000)."""
    if month is None:
        return -(1 << 63), (1 << 63) - 1
    from datetime import datetime, timedelta

    year, mon = int(month[:4]), int(month[5:7])
    nxt = (year + mon // 12, mon % 12 + 1)
    base = datetime(2000, 1, 1)
    micro = timedelta(microseconds=1)
    return (
        (datetime(year, mon, 1) - base) // micro,
        (datetime(nxt[0], nxt[1], 1) - base) // micro,
    )


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
        name: str | None = None,
        scan: bool = False,
        checks: CheckSpec | None = None,
        split: bytes | None = None,
    ) -> None:
        self.path = path
        self.name = name or path.name
        self.scan = scan
        # `split`: rows whose id sorts below this byte go to the first stream, the rest
        # to the second (`halves()`); needs the C extension (`can_split`)
        if split is not None and (len(split) != 1 or not can_split()):
            raise ValueError("split needs one byte and the C extension")
        self.pivot = split[0] if split else 0
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
        self.records = 0  # data records read (written or rejected; blank lines are none)
        self.rejects: list[Reject] = []
        self._scanned: Scanned | None = None
        self._bad_what: dict[str, dict[int, str]] = {}  # column -> row -> what is wrong
        self._lines: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)  # record -> line
        self._odd: dict[str, npt.NDArray[np.bool_]] = {}  # timestamps not in PG's spelling
        self._typed: dict[str, tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]] = {}
        self._fast_kinds = b"".join(_FAST_KINDS.get(self.kinds[c], b"T") for c in self.columns)
        self._fast_hashed = tuple(self.columns.index(c) for c in self.hashed)
        self._checks = (
            None if checks is None else _Checks(checks, self.columns, taxi.pickup, taxi.dropoff)
        )
        self._counts = _NO_COUNTS

    @property
    def check_counts(self) -> dict[str, int] | None:
        """The data checks over the rows written (with `checks`, once the pass ended)."""
        return None if self._checks is None else self._checks.result(self._counts)

    # ---- errors ---------------------------------------------------------------------------

    def _fail(self, line: int, column: str, value: str | None, what: str) -> BadRow:
        shown = "" if value is None else f' "{value[:80]}"'
        return BadRow(f"{self.name}: line {line}, column {column}{shown}: {what}; {HINT}")

    # ---- the stream ----------------------------------------------------------------------

    def batches(self) -> Iterator[Piece]:
        """The binary COPY data, in pieces (one stream: without `split`)."""
        if self.pivot:
            raise RuntimeError("a split stream has two halves(): read those")
        for low, _ in self.halves():
            yield low

    def halves(self) -> Iterator[tuple[Piece, Piece]]:
        """The two COPY streams of a `split` stream, in pieces made at the same time;
        without `split` the second is always empty.

        Blocks are split on record boundaries here and made in `workers` threads
        (Polars and numpy release the GIL); results are taken in file order, so the first
        bad row reported is the first in the file and rejects keep file order.

        The gzip CRC and length are checked as the file is read (`open_text_lines`). A
        file that fails them is damaged: nothing of it loads, whatever else went wrong
        first, so after a bad row the rest is inflated (only) to tell the two apart."""
        try:
            with (
                _decompressed(self.path, hashed=self.scan) as (src, position, hashing),
                ThreadPoolExecutor(self.workers, thread_name_prefix="taxi-cli-block") as pool,
            ):
                try:
                    yield from self._blocks(src, position, pool)
                    if hashing is not None:
                        self._scanned = Scanned(
                            hashing.sha256.hexdigest(),
                            hashing.read_bytes,
                            src.inflated,
                            self.records,
                        )
                except DataError as bad:
                    try:
                        while src.read(4 << 20):
                            pass
                    except READ_ERRORS as exc:
                        raise damaged(self.name, self.taxi.name, exc) from bad
                    raise
        except READ_ERRORS as exc:
            raise damaged(self.name, self.taxi.name, exc) from exc

    def scanned(self) -> Scanned:
        """What the pass measured (with `scan`, once `batches()` has run to its end)."""
        if self._scanned is None:
            raise RuntimeError("scanned() before the pass ended (or without scan=True)")
        return self._scanned

    def _blocks(
        self, src: _ReadAhead, position: Callable[[], int], pool: ThreadPoolExecutor
    ) -> Iterator[tuple[Piece, Piece]]:
        width = check_header(self.name, src.readline(), self.taxi.accepted_headers, self.taxi.name)
        yield pgbinary.SIGNATURE, pgbinary.SIGNATURE if self.pivot else b""
        pending: deque[Future[_Made]] = deque()
        try:
            line = 2
            while True:
                block = src.read_lines(self.block_bytes, MAX_RECORD)
                if not block:
                    break
                block = self._to_record_end(src, block, line)
                if self.progress is not None:
                    self.progress(position())
                pending.append(pool.submit(self._own_block, block, line, width))
                line += _count_lines(block)
                while len(pending) >= self.workers:
                    out = self._finish(pending.popleft())
                    if out[0] or out[1]:
                        yield out
            while pending:
                out = self._finish(pending.popleft())
                if out[0] or out[1]:
                    yield out
        finally:
            for future in pending:
                future.cancel()
        yield pgbinary.TRAILER, pgbinary.TRAILER if self.pivot else b""

    def _to_record_end(self, src: _ReadAhead, block: bytes, line: int) -> bytes:
        """Extend `block` (whole lines) while a quoted field is open at its end: a quoted
        field may hold line breaks. No record is longer than MAX_RECORD."""
        too_long = len(block) >= self.block_bytes + MAX_RECORD and not block.endswith(b"\n")
        open_quote = b'"' in block and _open_quote(block)
        parts = [block]
        grown = 0
        while open_quote and not too_long:
            more = src.readline(MAX_RECORD)
            if not more:
                break  # end of file: the block's last record reports the open quote
            parts.append(more)
            grown += len(more)
            open_quote ^= _open_quote(more)
            too_long = grown > MAX_RECORD
        joined = b"".join(parts) if len(parts) > 1 else block
        if too_long:
            where = line + joined.count(b"\n")
            raise BadRow(
                f"{self.name}: near line {where:,}: a record longer than {MAX_RECORD:,} "
                "bytes (an unclosed quote, or not a trip file); fix or re-extract the file"
            )
        return joined

    def _own_block(self, block: bytes, first_line: int, width: int) -> _Made:
        """`_block` on a copy of this stream: per-block state stays in the worker."""
        worker = copy.copy(self)
        worker.rows = 0
        worker.rejects = []
        worker._counts = _NO_COUNTS
        low, high, records = worker._block(block, first_line, width)
        rejects = sorted(worker.rejects, key=lambda r: r.line)
        return low, high, worker.rows, rejects, records, worker._counts

    def _finish(self, future: Future[_Made]) -> tuple[Piece, Piece]:
        low, high, rows, rejects, records, counts = future.result()
        self.rows += rows
        self.records += records
        self.rejects.extend(rejects)
        if counts is not _NO_COUNTS:
            self._counts = tuple(a + b for a, b in zip(self._counts, counts, strict=True))
        return low, high

    def _block(self, block: bytes, first_line: int, width: int) -> tuple[Piece, Piece, int]:
        """The block's COPY bytes (for each stream: see `split`), and how many data
        records it holds (blank lines excluded): what the source holds, written or
        rejected."""
        quoted = b'"' in block
        if _fastcopy is not None and width == len(self.columns) and not quoted:
            fast = self._fast(block, width)
            if fast is not None:
                return fast
        buf = np.frombuffer(block, dtype=np.uint8)
        newlines = np.flatnonzero(buf == 10)
        quotes = np.flatnonzero(buf == 34) if quoted else None
        # records end at a newline outside quotes (a quoted field may hold line breaks)
        ends = newlines if quotes is None else newlines[np.searchsorted(quotes, newlines) % 2 == 0]
        if len(block) and (not len(ends) or ends[-1] != len(block) - 1):
            ends = np.append(ends, len(block))
        n_lines = len(ends)
        starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
        self._lines = first_line + np.searchsorted(newlines, starts)  # record -> file line
        lengths = ends - starts
        # a trailing \r belongs to the line ending (the release files are CRLF)
        has_cr = lengths > 0
        has_cr[has_cr] = buf[ends[has_cr] - 1] == 13
        blank = (lengths - has_cr) == 0
        records = n_lines - int(np.count_nonzero(blank))
        commas = np.flatnonzero(buf == 44)
        if quotes is not None:  # a comma inside quotes separates nothing
            commas = commas[np.searchsorted(quotes, commas) % 2 == 0]
        if len(commas) == (width - 1) * int(n_lines - blank.sum()) and quotes is None:
            # the common case, checked in one pass: every line has the right width
            fields = np.where(blank, 0, width)
        else:
            fields = np.diff(np.searchsorted(commas, np.concatenate(([-1], ends)))) + 1
        problems = self._text_problems(block, buf, starts, ends, quotes)
        for long in np.flatnonzero(lengths > MAX_RECORD).tolist():
            problems[long] = _TOO_LONG
        for wrong in np.flatnonzero((fields != width) & ~blank).tolist():
            problems.setdefault(wrong, f"expected {width} fields, found {int(fields[wrong])}")
        drop = blank.copy()
        for i in sorted(problems):
            text = self._line_text(block, int(starts[i]), int(ends[i]))
            reason = problems[i]
            line = int(self._lines[i])
            if reason in _FATAL:  # the rest of the file has no record boundaries
                raise BadRow(f"{self.name}: line {line}: {reason}; fix or re-extract the file")
            if not self.quarantine:
                if i > 0:  # a bad value on an earlier line is the first error
                    self._block(block[: int(starts[i])], first_line, width)
                raise BadRow(f"{self.name}: line {line}: {reason}; {HINT}")
            self.rejects.append(Reject(line, reason, text))
            drop[i] = True
        kept: npt.NDArray[np.int64] | None = None
        if drop.any():
            kept = np.flatnonzero(~drop).astype(np.int64)
            block = b"\n".join(block[int(starts[i]) : int(ends[i])] for i in kept)
        df = self._parse(block) if (kept is None or len(kept)) else None
        if df is None or df.height == 0:
            return b"", b"", records
        typed, bad = self._convert(df)
        if bad.any():
            df, typed, kept = self._bad_values(df, typed, bad, kept, n_lines)
            if df.height == 0:
                return b"", b"", records
        self._typed = typed
        if self._checks is not None:
            self._counts = self._checks.of_rows(df, typed)
        wire: list[pgbinary.Field] = [self._row_ids(df)]
        for name in self.columns:
            if name in typed:
                values, nulls = typed[name]
                wire.append(pgbinary.Fixed(values, nulls, _WIRE[self.kinds[name]]))
            else:
                wire.append(_text_field(df[name]))
        self.rows += df.height
        data = pgbinary.encode(wire, df.height)
        if self.pivot:
            low, high = _fastcopy.split_rows(data, self.pivot)
            return low, high, records
        return data, b"", records

    def _fast(self, block: bytes, width: int) -> tuple[Piece, Piece, int] | None:
        """`_block` in C, GIL released: canonical lines only; anything else (a bad or odd
        value, a blank line, a wrong width) gives None and the block goes the Python way."""
        assert _fastcopy is not None
        kinds, hashed = self._fast_kinds, self._fast_hashed
        args = None if self._checks is None else self._checks.c_args
        low: Piece
        high: Piece = b""
        counts: tuple[int, ...] | None = None
        if self.pivot:
            split = _fastcopy.encode_split(block, kinds, hashed, width, args, self.pivot)
            if split is None:
                return None
            low, high, made, counts = split
        elif args is None:
            plain = _fastcopy.encode(block, kinds, hashed, width)
            if plain is None:
                return None
            low, made = plain
        else:
            counted = _fastcopy.encode(block, kinds, hashed, width, args)
            if counted is None:
                return None
            low, made, counts = counted
        if counts is not None:
            self._counts = counts
        self.rows += made
        return low, high, made

    @staticmethod
    def _text_problems(
        block: bytes,
        buf: npt.NDArray[np.uint8],
        starts: npt.NDArray[np.int64],
        ends: npt.NDArray[np.int64],
        quotes: npt.NDArray[np.int64] | None,
    ) -> dict[int, str]:
        """Records PostgreSQL cannot take as text (NUL, invalid UTF-8), or whose quoting
        CSV readers read differently (a quote inside an unquoted field, an open quote)."""
        problems: dict[int, str] = {}

        def record(at: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
            return np.searchsorted(ends, at).astype(np.int64)

        for i in np.unique(record(np.flatnonzero(buf == 0))).tolist():
            problems[i] = "a NUL byte (PostgreSQL text cannot hold one)"
        if not block.isascii():
            for i in np.unique(record(np.flatnonzero(buf >= 0x80))).tolist():
                try:
                    block[int(starts[i]) : int(ends[i])].decode("utf-8")
                except UnicodeDecodeError as exc:
                    problems.setdefault(i, f"invalid UTF-8 ({exc.reason})")
        if quotes is not None and len(quotes):
            k = np.arange(len(quotes))
            before = buf[np.maximum(quotes - 1, 0)]
            after = buf[np.minimum(quotes + 1, len(buf) - 1)]
            follows_quote = np.concatenate(([False], quotes[1:] == quotes[:-1] + 1))
            opening_ok = (quotes == starts[record(quotes)]) | (before == 44) | follows_quote
            closing_ok = (quotes == len(buf) - 1) | np.isin(after, (34, 44, 13, 10))
            stray = np.where(k % 2 == 0, ~opening_ok, ~closing_ok)
            for i in np.unique(record(quotes[stray])).tolist():
                problems.setdefault(i, "a quote inside an unquoted field")
            if len(quotes) % 2:
                problems[int(record(quotes[-1:])[0])] = _UNCLOSED
        return problems

    @staticmethod
    def _line_text(block: bytes, start: int, end: int) -> str:
        text = block[start:end].decode("utf-8", "replace").rstrip("\r")[:1000]
        return text.replace("\0", "\\0")  # kept as text in the rejects table

    def _parse(self, block: bytes) -> pl.DataFrame:
        """Every column as text (quoted fields unquoted, unquoted empty as NULL); the
        typed ones are converted by `_convert`, under PostgreSQL's rules."""
        try:
            return pl.read_csv(
                block,
                has_header=False,
                schema=dict.fromkeys(self.columns, pl.String),
                quote_char='"',
            )
        except pl.exceptions.PolarsError as exc:
            raise DataError(f"{self.name}: cannot parse the CSV ({exc}); {HINT}") from exc

    def _line_of(self, row: int, kept: npt.NDArray[np.int64] | None) -> int:
        return int(self._lines[int(kept[row]) if kept is not None else row])

    # ---- typed values, bad values -------------------------------------------------------

    def _convert(
        self, df: pl.DataFrame
    ) -> tuple[dict[str, tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]], npt.NDArray[np.bool_]]:
        """Typed columns as numpy (values, NULL mask), and which rows hold a bad value.
        The plain forms are converted by Polars in one select; every other value by
        `pgtext`, which reads it as PostgreSQL would (or finds it unloadable)."""
        exprs: list[pl.Expr] = []
        names = []
        for name, kind in self.kinds.items():
            if kind not in _WIRE:
                continue
            col = pl.col(name)
            plain = col.str.contains(_BULK[kind])
            if kind is Kind.COUNT:
                conv = col.cast(pl.Int32, strict=False)
            elif kind is Kind.MONEY:
                conv = col.cast(pl.Float64, strict=False)
            else:
                parsed = col.str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S", strict=False)
                conv = parsed.dt.epoch("us") - pgbinary.PG_EPOCH_US
            conv = pl.when(plain).then(conv)
            names.append(name)
            exprs += [
                conv.fill_null(0).alias(name),
                col.is_null().alias(f"{name}\0null"),
                (conv.is_null() & col.is_not_null()).alias(f"{name}\0slow"),
            ]
        converted = df.select(exprs)
        typed = {}
        bad = np.zeros(df.height, dtype=np.bool_)
        self._bad_what = {}
        self._odd = {}
        for name in names:
            kind = self.kinds[name]
            nulls = converted[f"{name}\0null"].to_numpy()
            slow = converted[f"{name}\0slow"].to_numpy()
            values = converted[name].to_numpy()
            failed = np.zeros(df.height, dtype=np.bool_)
            if slow.any():
                values = values.copy()
                raw = df[name]
                what: dict[int, str] = {}
                for i in np.flatnonzero(slow).tolist():
                    try:
                        values[i] = _SLOW[kind](str(raw[i]))
                    except pgtext.Unloadable as exc:
                        failed[i] = True
                        what[i] = exc.what
                self._bad_what[name] = what
            if kind is Kind.TIMESTAMP:  # not in PostgreSQL's spelling: rendered for the id
                self._odd[name] = slow & ~failed
            typed[name] = (values, nulls)
            bad |= failed
        return typed, bad

    def _bad_values(
        self,
        df: pl.DataFrame,
        typed: dict[str, tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]],
        bad: npt.NDArray[np.bool_],
        kept: npt.NDArray[np.int64] | None,
        n_lines: int,
    ) -> tuple[
        pl.DataFrame,
        dict[str, tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]],
        npt.NDArray[np.int64],
    ]:
        """Reject mode: fail on the first bad value. Quarantine: record and drop the rows."""
        for row in np.flatnonzero(bad).tolist():
            column = next(c for c in self.columns if row in self._bad_what.get(c, {}))
            value = str(df[column][row])
            line = self._line_of(row, kept)
            what = self._bad_what[column][row]
            if not self.quarantine:
                raise self._fail(line, column, value, what)
            raw = ",".join("" if v is None else str(v) for v in df.row(row))
            self.rejects.append(Reject(line, f'column {column}: {what} "{value}"', raw))
        keep = ~bad
        base = kept if kept is not None else np.arange(n_lines, dtype=np.int64)
        kept_typed = {k: (v[keep], nulls[keep]) for k, (v, nulls) in typed.items()}
        self._odd = {k: mask[keep] for k, mask in self._odd.items()}
        return df.filter(pl.Series(keep)), kept_typed, base[keep]

    # ---- unique_row_id ----------------------------------------------------------------------

    def _rendered(self, df: pl.DataFrame, name: str) -> pl.Expr:
        """The column as PostgreSQL's `::text` renders its typed value ('' for NULL)."""
        kind = self.kinds[name]
        col = pl.col(name)
        if kind is Kind.MONEY:
            values, nulls = self._typed[name]
            return pl.lit(_pg_doubles(values, nulls))
        if kind is Kind.TIMESTAMP:
            odd = np.flatnonzero(self._odd[name])
            if not len(odd):
                return col.fill_null("")
            micros = self._typed[name][0]
            rendered = [pgtext.timestamp_text(int(micros[i])) for i in odd]
            fixed = df[name].scatter(odd, rendered)
            return pl.lit(fixed).fill_null("")
        return col.fill_null("")

    def _row_ids(self, df: pl.DataFrame) -> pgbinary.Text:
        parts = [self._rendered(df, name) for name in self.hashed]
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
