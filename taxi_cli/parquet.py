"""Typed Parquet from a release `.csv.gz` (`extract --format parquet`, the GCS lake).

Guarantees:

- Columns: `unique_row_id` (the course's md5, byte-identical to what PostgreSQL computes
  over the typed columns, see `taxi_cli.rowid`), `filename` (the uncompressed CSV name,
  e.g. `green_tripdata_2020-04.csv`), `file_month` (DATE, the first day of the file's
  month), then the release's columns under the catalogue's names (`taxi.header`),
  whatever spelling the file used. Ids and counts are nullable Int64, timestamps
  timestamps (no zone), money and distance float64, flags and text strings; an empty
  field is null. An integer column accepts `2.0` (pandas round-trips write that) but
  not `2.5`; a value that does not fit its column is a DataError naming line and column.
- Keyed by content: the file's key-value metadata records the source's sha256,
  `FORMAT_VERSION`, the rows and taxi-cli's version; an existing Parquet is reused only
  when sha256 and format version match (and its footer reads), else it is rebuilt. It is
  written to a temporary name and renamed, so the final name only holds a whole file.
- Bounded memory, one pass, nothing uncompressed on disk: the gzip is inflated in a
  read-ahead thread into blocks of ~`BLOCK_BYTES` (whole lines); each block is parsed and
  hashed in a worker thread (Polars and numpy release the GIL) and handed, in file order,
  to Polars' streaming Parquet sink. Memory is a few blocks whatever the file size.
- A block of release-format text takes the fast path: numbers typed by the CSV reader,
  strict casts, doubles rendered by Polars (PostgreSQL's text form in 1e-4 <= |x| < 1e15,
  checked). Any block that does not fit goes through the lenient path, whole, which
  finds the first bad value or converts what fits (`2.0`, ISO `T`, fractions).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import queue
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

import numpy as np
import numpy.typing as npt
import polars as pl
from polars.io.plugins import register_io_source

from taxi_cli import __version__
from taxi_cli.catalog import TAXIS, Kind, TaxiType
from taxi_cli.errors import DataError
from taxi_cli.hashed_reader import HashingReader
from taxi_cli.postgres import md5vec
from taxi_cli.rowid import pg_float_text
from taxi_cli.verify import VerifyError, check_header

if TYPE_CHECKING:
    from taxi_cli.model import Extracted

_INFLATE_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error)
try:
    from isal import igzip as _igzip
    from isal import isal_zlib

    _INFLATE_ERRORS += (cast("type[BaseException]", isal_zlib.error),)  # its stub says Exception
except ImportError:  # pragma: no cover - isal has wheels for the usual platforms
    _igzip = None  # type: ignore[assignment]

# Bump when the columns, their types or their values change: older files are rebuilt.
FORMAT_VERSION = "2"
META_SOURCE = "taxi_cli.source_sha256"
META_FORMAT = "taxi_cli.format"
META_ROWS = "taxi_cli.rows"
META_TOOL = "taxi_cli.version"
LINEAGE = ("unique_row_id", "filename", "file_month")

BLOCK_BYTES = 2 << 20  # ~22k rows; a block's working set is ~20x its size (Polars, numpy)
WORKERS = 3  # blocks parsed at once: one more than 2 cores keeps both busy while the sink encodes
ROW_GROUP_ROWS = 64_000  # the sink holds a few row groups: less is less memory

RELEASE_TIMESTAMP = "%Y-%m-%d %H:%M:%S"
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S%.f"  # the lenient path also takes fractions

_WHAT = {
    Kind.ID: "an integer",
    Kind.COUNT: "an integer",
    Kind.TIMESTAMP: "a timestamp YYYY-MM-DD HH:MM:SS",
    Kind.MONEY: "a number",
}
_TYPES: dict[Kind, pl.DataType] = {
    Kind.ID: pl.Int64(),
    Kind.COUNT: pl.Int64(),
    Kind.TIMESTAMP: pl.Datetime("us"),
    Kind.MONEY: pl.Float64(),
    Kind.FLAG: pl.String(),
    Kind.TEXT: pl.String(),
}


def parquet_path_for(path: Path) -> Path:
    """`green_tripdata_2020-04.csv.gz` -> `green_tripdata_2020-04.parquet`, same dir."""
    stem = path.name.removesuffix(".gz").removesuffix(".csv")
    return path.with_name(stem + ".parquet")


def output_schema(taxi: TaxiType) -> dict[str, pl.DataType]:
    """The Parquet's columns and types, in file order."""
    lineage: dict[str, pl.DataType] = {
        "unique_row_id": pl.String(),
        "filename": pl.String(),
        "file_month": pl.Date(),
    }
    return lineage | {c.name: _TYPES[c.kind] for c in taxi.columns}


def file_month_of(text: str) -> date:
    """`2020-04` or `green_tripdata_2020-04.csv` -> 2020-04-01."""
    stem = text.removesuffix(".csv").rsplit("_", 1)[-1]
    try:
        year, month = stem.split("-")
        return date(int(year), int(month), 1)
    except ValueError as exc:
        raise DataError(
            f"{text}: the file name does not end in _YYYY-MM, so its month (file_month) is "
            "unknown; name it as released (e.g. green_tripdata_2020-04.csv.gz)"
        ) from exc


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def is_current(out: Path, sha256: str) -> bool:
    """True when `out` is a whole Parquet of this format, made from that source."""
    try:
        meta = pl.read_parquet_metadata(out)
    except (OSError, pl.exceptions.PolarsError, ValueError):
        return False  # missing, truncated or not Parquet: rebuild
    return meta.get(META_SOURCE) == sha256 and meta.get(META_FORMAT) == FORMAT_VERSION


def to_parquet(
    source: Extracted | Path,
    taxi: TaxiType | str,
    *,
    force: bool = False,
    csv_name: str | None = None,
    month: str | None = None,
) -> Path:
    """Write the typed Parquet next to the `.csv.gz` (atomically) and return its path.

    An existing Parquet made from the same source bytes (sha256) by this format version is
    reused unless `force`. `csv_name` is the `filename` value (default: the file's name
    without `.gz`); `month` (YYYY-MM) gives `file_month` (default: the source's month, or
    the one its name ends in). A value that does not fit its column raises DataError
    naming the line and column; nothing is left under the final name then.
    """
    taxi = TAXIS[taxi] if isinstance(taxi, str) else taxi
    path = source if isinstance(source, Path) else source.path
    verified = None if isinstance(source, Path) else source.sha256
    out = parquet_path_for(path)
    if not force and out.exists() and is_current(out, verified or file_sha256(path)):
        return out
    name = csv_name or path.name.removesuffix(".gz")
    month = month or (None if isinstance(source, Path) else source.month)
    conversion = _Conversion(
        path, taxi, name, file_month_of(month or name), verified=verified is not None
    )
    staging = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        conversion.sink(staging)
        if verified is not None and conversion.sha256 != verified:
            raise DataError(
                f"{path.name}: the file changed since it was verified (sha256 "
                f"{conversion.sha256[:12]}..., verified {verified[:12]}...); "
                "re-extract it with --force"
            )
        if not is_current(staging, conversion.sha256):  # the footer we wrote reads back
            raise DataError(f"{path.name}: the Parquet written to {staging} does not read back")
        os.replace(staging, out)
    finally:
        staging.unlink(missing_ok=True)
    return out


# ---- reading --------------------------------------------------------------------------


def _open(raw: HashingReader, name: str) -> IO[bytes]:
    if name.endswith(".gz"):
        # ISA-L inflates ~3.5x faster than zlib here (0.08 vs 0.29 CPU-s per million rows),
        # a tenth of the whole conversion; zlib stays the fallback
        if _igzip is None:
            return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
        return cast(IO[bytes], _igzip.GzipFile(fileobj=raw, mode="rb"))  # type: ignore[no-untyped-call]
    return cast(IO[bytes], io.BufferedReader(raw, 4 << 20))


class _LineError(Exception):
    """A bad line, numbered within its block; the consumer, which knows where the block
    starts in the file, turns it into the DataError (so no thread counts every line)."""

    def __init__(self, offset: int, before: str, after: str) -> None:
        super().__init__(f"{before}+{offset}{after}")
        self.offset, self.before, self.after = offset, before, after


_Result = tuple[pl.DataFrame, int]  # a block's frame and how many file lines it spans


class _Pipeline:
    """Whole-line blocks of the decompressed file, read ahead by a thread that also hands
    each to the workers (ISA-L/zlib and Polars release the GIL): the workers keep busy
    while the sink encodes, and at most `depth` results wait, in file order."""

    def __init__(
        self,
        src: IO[bytes],
        block_bytes: int,
        submit: Callable[[bytes], Future[_Result]],
        depth: int,
    ) -> None:
        self._queue: queue.Queue[Future[_Result] | BaseException | None] = queue.Queue(depth)
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(src, block_bytes, submit), name="taxi-cli-inflate"
        )
        self._thread.daemon = True
        self._thread.start()

    def _run(
        self, src: IO[bytes], block_bytes: int, submit: Callable[[bytes], Future[_Result]]
    ) -> None:
        try:
            while True:
                data = src.read(block_bytes)
                if not data:
                    break
                if not data.endswith(b"\n"):
                    data += src.readline()
                while b'"' in data and data.count(b'"') % 2:  # end outside a quoted field
                    more = src.readline()
                    if not more:
                        break
                    data += more
                future = submit(data)
                if not self._put(future):
                    future.cancel()
                    return
            self._put(None)
        except BaseException as exc:  # handed to the consuming thread
            self._put(exc)

    def _put(self, item: Future[_Result] | BaseException | None) -> bool:
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Future[_Result]]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()
        while not self._queue.empty():  # results nobody will take
            item = self._queue.get_nowait()
            if isinstance(item, Future):
                item.cancel()


# ---- one file -------------------------------------------------------------------------


class _Conversion:
    """One csv.gz -> Parquet run: header check, blocks in workers, the streaming sink."""

    def __init__(
        self, path: Path, taxi: TaxiType, csv_name: str, file_month: date, *, verified: bool
    ) -> None:
        self.path = path
        self.verified = verified  # by extract: every line has the header's width
        self.name = path.name
        self.taxi = taxi
        self.csv_name = csv_name
        self.file_month = file_month
        self.columns = taxi.columns
        self.schema = output_schema(taxi)
        self.hashed = list(taxi.hash_columns)
        hashed = set(self.hashed)
        # the fast reader: numbers typed by the CSV reader, except hashed ids (their text
        # is hashed) and timestamps (checked for PostgreSQL's own spelling)
        self.fast_read: dict[str, pl.DataType] = {}
        for c in self.columns:
            if c.kind is Kind.TIMESTAMP or (c.kind is Kind.ID and c.name in hashed):
                self.fast_read[c.name] = pl.String()
            else:
                self.fast_read[c.name] = _TYPES[c.kind]
        self.rows = 0
        self.sha256 = ""  # of the bytes read, known once the source is exhausted
        self.error: BaseException | None = None

    def sink(self, staging: Path) -> int:
        def metadata(_: object) -> dict[str, str]:
            # called when the footer is written: the rows and the digest are known by then
            return {
                META_SOURCE: self.sha256,
                META_FORMAT: FORMAT_VERSION,
                META_ROWS: str(self.rows),
                META_TOOL: __version__,  # informative: reuse keys on the format version
                "taxi_cli.filename": self.csv_name,
            }

        lf = register_io_source(self._source, schema=self.schema, validate_schema=True)
        try:
            lf.sink_parquet(
                staging,
                compression="snappy",  # fast, and read by every consumer (BigQuery, Spark)
                row_group_size=ROW_GROUP_ROWS,
                statistics=True,
                metadata=metadata,
            )
        except Exception as exc:
            if self.error is not None:  # ours, raised inside the source: keep its type
                raise self.error from None
            if isinstance(exc, (OSError, DataError)):
                raise
            raise DataError(f"{self.name}: cannot write the Parquet ({exc})") from exc
        if self.error is not None:
            raise self.error
        return self.rows

    def _source(
        self,
        with_columns: list[str] | None,
        predicate: pl.Expr | None,
        n_rows: int | None,
        batch_size: int | None,
    ) -> Iterator[pl.DataFrame]:
        try:
            for df in self._frames():
                if with_columns is not None:
                    df = df.select(with_columns)
                if predicate is not None:
                    df = df.filter(predicate)
                if n_rows is not None:
                    df = df.head(n_rows)
                    n_rows -= df.height
                yield df
                if n_rows is not None and n_rows <= 0:
                    return
        except Exception as exc:  # not GeneratorExit: the engine may close us early
            self.error = exc
            raise

    def _frames(self) -> Iterator[pl.DataFrame]:
        try:
            with (
                HashingReader(self.path.open("rb")) as raw,
                _open(raw, self.name) as src,
                ThreadPoolExecutor(WORKERS, thread_name_prefix="taxi-cli-parquet") as pool,
            ):
                self._check_header(src.readline())

                def submit(data: bytes) -> Future[_Result]:
                    return pool.submit(self._block, data)

                pipeline = _Pipeline(src, BLOCK_BYTES, submit, WORKERS)
                try:
                    line = 2  # of the block's first line (the header is line 1)
                    for future in pipeline:
                        try:
                            df, lines = future.result()
                        except _LineError as exc:
                            at = line + exc.offset
                            raise DataError(f"{exc.before}{at}{exc.after}") from None
                        line += lines
                        self.rows += df.height
                        yield df
                finally:
                    pipeline.stop()
                while raw.read(1 << 20):  # the digest covers the whole file
                    pass
                self.sha256 = raw.sha256.hexdigest()
        except _INFLATE_ERRORS as exc:
            raise DataError(
                f"{self.name}: cannot read the file ({exc}); re-extract it with --force"
            ) from exc

    def _check_header(self, line: bytes) -> None:
        text = line.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace").strip()
        header = tuple(h.strip().strip('"') for h in text.split(","))
        try:
            check_header(self.name, self.taxi, header)
        except VerifyError as exc:
            raise DataError(str(exc)) from exc

    # ---- blocks ---------------------------------------------------------------------

    def _block(self, data: bytes) -> _Result:
        # Polars reads a blank line as a row of NULLs and fills a short line with NULLs:
        # blocks with blank lines, and (for a file not verified by extract, which checks
        # every line's width) blocks with a wrong comma count, go the lenient way
        plain = not (b"\n\n" in data or b"\n\r\n" in data or data.startswith((b"\n", b"\r\n")))
        if plain and not self.verified:
            lines = data.count(b"\n") + (not data.endswith(b"\n"))
            plain = data.count(b",") == (len(self.columns) - 1) * lines
        fast = self._fast(data) if plain else None
        if fast is None:
            return self._lenient(data)
        if b'"' in data:  # a quoted field may hold a newline: count the lines
            return fast, data.count(b"\n") + (not data.endswith(b"\n"))
        return fast, fast.height  # no blank lines: one line per row

    def _lineage(self, ids: pl.Series) -> list[pl.Series | pl.Expr]:
        return [
            ids.alias("unique_row_id"),
            pl.lit(self.csv_name, pl.String).alias("filename"),
            pl.lit(self.file_month, pl.Date).alias("file_month"),
        ]

    def _fast(self, data: bytes) -> pl.DataFrame | None:
        """Release-format text: typed by the reader and strict casts; None if it is not."""
        try:
            df = pl.read_csv(
                data,
                has_header=False,
                schema=self.fast_read,
                quote_char='"',
            )
        except pl.exceptions.PolarsError:
            return None
        exprs: list[pl.Expr] = []
        texts: list[pl.Expr] = []
        checks: list[pl.Expr] = []
        for c in self.columns:
            col = pl.col(c.name)
            if c.kind is Kind.TIMESTAMP:
                exprs.append(col.str.strptime(pl.Datetime("us"), RELEASE_TIMESTAMP, strict=False))
                # PostgreSQL's own spelling (19 characters) hashes as it is
                checks.append(
                    (col.str.len_bytes() != 19).fill_null(False)
                    | (col.is_not_null() & exprs[-1].is_null())
                )
            elif self.fast_read[c.name] != _TYPES[c.kind]:  # a hashed id, read as text
                exprs.append(col.cast(pl.Int64, strict=False))
                checks.append(col.is_not_null() & exprs[-1].is_null())
            else:
                exprs.append(col)
        for name in self.hashed:
            kind = self._kind(name)
            col = pl.col(name)
            if kind is Kind.MONEY:
                texts.append(col.cast(pl.String).str.strip_suffix(".0").fill_null(""))
                magnitude = col.abs()
                checks.append(
                    (
                        ~col.is_finite() | (magnitude >= 1e15) | ((magnitude < 1e-4) & (col != 0))
                    ).fill_null(False)
                )
            else:
                texts.append(col.fill_null(""))
        odd = pl.any_horizontal(checks) if checks else pl.lit(False)
        out = df.select(
            *[e.alias(c.name) for e, c in zip(exprs, self.columns, strict=True)],
            pl.concat_str(texts).alias("\0message"),
            odd.alias("\0odd"),
        )
        if out["\0odd"].any():
            return None
        ids = md5_hex(out["\0message"])
        return out.select(*self._lineage(ids), *[c.name for c in self.columns])

    def _kind(self, name: str) -> Kind:
        return next(c.kind for c in self.columns if c.name == name)

    def _lenient(self, block: bytes) -> _Result:
        """Every field as text, lenient casts; the first bad value raises _LineError."""
        data, lines, spans = self._lines(block)
        try:
            raw = pl.read_csv(
                data,
                has_header=False,
                schema=dict.fromkeys(self.fast_read, pl.String()),
                quote_char='"',
                encoding="utf8-lossy",
            )
        except pl.exceptions.PolarsError as exc:
            raise _LineError(
                0,
                f"{self.name}: lines ",
                f"..: cannot parse the CSV ({exc}); the file is not in the release format "
                "(re-download it with --force)",
            ) from exc
        if raw.height != len(lines):  # quoted newlines: number the records from the first
            lines = np.arange(raw.height)
        typed = raw.select(_typed(pl.col(c.name), c.kind).alias(c.name) for c in self.columns)
        self._check_values(raw, typed, lines)
        parts = [self._rendered(raw, typed, name) for name in self.hashed]
        message = pl.DataFrame(parts).select(pl.concat_str(pl.all()).alias("m")).to_series()
        ids = md5_hex(message)
        return typed.select(*self._lineage(ids), *[c.name for c in self.columns]), spans

    def _lines(self, data: bytes) -> tuple[bytes, npt.NDArray[np.int64], int]:
        """The block without blank lines (skipped, as load-pg does), the line offset of each
        line kept, and the lines it spans; a line of the wrong width raises _LineError."""
        buf = np.frombuffer(data, dtype=np.uint8)
        ends = np.flatnonzero(buf == 10)
        if data and data[-1:] != b"\n":
            ends = np.append(ends, len(data))
        starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
        lengths = ends - starts
        has_cr = lengths > 0
        has_cr[has_cr] = buf[ends[has_cr] - 1] == 13
        blank = (lengths - has_cr) == 0
        numbers = np.arange(len(ends), dtype=np.int64)
        width = len(self.columns)
        if b'"' not in data:  # (quoted commas: Polars' parse decides)
            commas = np.flatnonzero(buf == 44)
            fields = np.diff(np.searchsorted(commas, np.concatenate(([-1], ends)))) + 1
            wrong = np.flatnonzero((fields != width) & ~blank)
            if wrong.size:
                at = int(wrong[0])
                raise _LineError(
                    at,
                    f"{self.name}: line ",
                    f": {int(fields[at])} fields, expected {width}; the file is not in the "
                    "release format (re-download it with --force)",
                )
        if not blank.any() or b'"' in data:  # (an empty line may be inside a quoted field)
            return data, numbers, len(ends)
        keep = np.flatnonzero(~blank)
        kept = b"\n".join(data[int(starts[i]) : int(ends[i])] for i in keep)
        return kept + b"\n", numbers[keep], len(ends)

    def _rendered(self, raw: pl.DataFrame, typed: pl.DataFrame, name: str) -> pl.Series:
        """The text PostgreSQL would hash for one column of the block ('' for NULL)."""
        kind = self._kind(name)
        if kind is Kind.MONEY:
            values = raw[name].str.strip_chars()
            mapping = {v: pg_float_text(v) for v in values.drop_nulls().unique().to_list()}
            return values.replace_strict(mapping, default="", return_dtype=pl.String).alias(name)
        if kind is Kind.TIMESTAMP:
            text = raw[name]
            canonical = text.str.contains(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
            odd = np.flatnonzero((~canonical).fill_null(False).to_numpy())
            if len(odd):
                stamps = typed[name]
                text = text.scatter(odd, [_pg_timestamp(stamps[int(i)]) for i in odd])
            return text.fill_null("").alias(name)
        return raw[name].fill_null("")

    def _check_values(
        self, raw: pl.DataFrame, typed: pl.DataFrame, lines: npt.NDArray[np.int64]
    ) -> None:
        """Raise DataError at the first value that does not parse as its column's type."""
        checked = [c for c in self.columns if c.kind in _WHAT]
        bad = raw.select(
            (pl.col(c.name).is_not_null() & typed[c.name].is_null()).alias(c.name) for c in checked
        )
        rows = np.flatnonzero(bad.select(pl.any_horizontal(pl.all())).to_series().to_numpy())
        if not len(rows):
            return
        row = int(rows[0])
        column = next(c for c in checked if bad[c.name][row])
        raise _LineError(
            int(lines[row]),
            f"{self.name}: line ",
            f", column {column.name}: {raw[column.name][row]!r} is not {_WHAT[column.kind]}; "
            "the file is not in the release format (fix or re-download it with --force)",
        )


def _typed(raw: pl.Expr, kind: Kind) -> pl.Expr:
    """The typed value of one string column (null where the text does not parse)."""
    if kind in (Kind.ID, Kind.COUNT):
        text = raw.str.strip_chars()
        as_float = text.cast(pl.Float64, strict=False)
        integral = as_float.is_finite() & (as_float == as_float.floor()) & (as_float.abs() < 2**53)
        from_float = pl.when(integral).then(as_float).otherwise(None).cast(pl.Int64)
        return pl.coalesce(text.cast(pl.Int64, strict=False), from_float)
    if kind is Kind.TIMESTAMP:
        text = raw.str.strip_chars().str.replace("T", " ", literal=True)
        return text.str.to_datetime(TIMESTAMP_FORMAT, strict=False, time_unit="us")
    if kind is Kind.MONEY:
        return raw.str.strip_chars().cast(pl.Float64, strict=False)
    return raw


def _pg_timestamp(stamp: datetime | None) -> str:
    """PostgreSQL's text form of a `timestamp` ('' for NULL)."""
    if stamp is None:
        return ""
    text = f"{stamp:%Y-%m-%d %H:%M:%S}"
    return text + (f".{stamp.microsecond:06d}".rstrip("0") if stamp.microsecond else "")


# ---- md5 ------------------------------------------------------------------------------


def md5_hex(messages: pl.Series) -> pl.Series:
    """Lowercase md5 hex of each string: in C (4 lanes at a time, without the GIL) when
    it is built, else vectorised in numpy (numpy releases the GIL too; 2.5x the CPU)."""
    n = len(messages)
    lens = messages.str.len_bytes().to_numpy().astype(np.int64)
    fast = md5vec.hex_of_joined(messages.str.join("").item().encode(), lens) if n else None
    if fast is not None:
        return pl.Series("unique_row_id", fast).cast(pl.String)
    digests = np.empty((n, 16), dtype=np.uint8)
    done = np.zeros(n, dtype=np.bool_)
    for width, low, high in ((64, 0, 55), (128, 56, 119)):
        pick = np.flatnonzero((lens >= low) & (lens <= high))
        if not len(pick):
            continue
        group = messages if len(pick) == n else messages.gather(pick)
        padded = group.str.pad_end(width, "\0").str.join("").item().encode()
        if len(padded) == len(pick) * width:  # ASCII: one character per byte
            digests[pick] = md5vec.md5_padded(padded, lens[pick], width)
            done[pick] = True
    for i in np.flatnonzero(~done):  # long or non-ASCII messages, one by one
        digests[i] = md5vec.md5_one(str(messages[int(i)]).encode())
    hexed = md5vec.hex_digests(digests)
    return pl.Series("unique_row_id", hexed.view("S32").ravel()).cast(pl.String)
