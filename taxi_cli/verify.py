"""Verification of a downloaded release file before it is accepted.

A trip file (`.csv.gz`) passes when: its size and sha256 match the release manifest (or
differ only in the gzip MTIME, see `MTIME_WINDOW`); the gzip stream decompresses to its
end with good CRC and length (further gzip members are allowed, trailing garbage is
not); the header is one the taxi type is released with; and every record has the
header's number of fields. A short record is what a truncated download looks like.

Speed matters: a 7,000,000-row yellow month is ~670 MB of CSV. Trip files never quote
fields, so records are checked in bulk with numpy (newline positions, comma counts per
line) on ~16 MiB slices of the inflated output (ISA-L's inflate; zlib without it); the
slower exact `csv` scan runs only if a quote character shows up. The zone lookup
(quoted, 265 rows) always uses `csv`.

Memory is bounded whatever the compression ratio: zlib output is taken `INFLATE_CHUNK`
bytes at a time (a few KiB of gzip can inflate to gigabytes of blank lines), numpy
works on blocks of at most `CHECK_BLOCK` bytes, and a line longer than `MAX_LINE` (any
real record is ~200 bytes) is an error, in either scan.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Queue
from types import ModuleType
from typing import Any, cast

from taxi_cli.catalog import TAXIS, ZONES_COLUMNS, ZONES_ROWS, ManifestEntry, TaxiType
from taxi_cli.errors import DataError

_inflate: ModuleType = zlib
_INFLATE_ERRORS: tuple[type[BaseException], ...] = (zlib.error,)
try:  # ISA-L's inflate, ~2.6x zlib's here (the same API, bounded output included)
    from isal import isal_zlib

    _inflate = isal_zlib
    _INFLATE_ERRORS += (cast("type[BaseException]", isal_zlib.error),)  # its stub says Exception
except ImportError:  # pragma: no cover - isal has wheels for the usual platforms
    pass

GZIP_MAGIC = b"\x1f\x8b"
READ_CHUNK = 4 << 20  # compressed bytes per read
SCAN_CHUNK = 16 << 20  # decompressed bytes handed to the scanner at a time
INFLATE_CHUNK = 4 << 20  # most decompressed bytes one zlib call may return
CHECK_BLOCK = 2 << 20  # most bytes one numpy pass looks at (its index arrays are 8x that)
MAX_LINE = 1 << 20  # a trip record is ~200 bytes
# DataTalksClub re-uploaded the release assets on 2022-07-14; copies made before differ
# from the manifest only in the gzip header's MTIME (bytes 4..7), set in this window.
MTIME_WINDOW = range(1657790333, 1657790394)


class VerifyError(DataError):
    """A file failed verification: `problem` at `line` (1 = the header), if known."""

    def __init__(self, name: str, problem: str, line: int | None = None) -> None:
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{name}: {where}{problem}")
        self.name = name
        self.problem = problem
        self.line = line


class ManifestMismatch(VerifyError):
    """Size or sha256 differ from the release manifest."""


@dataclass(frozen=True)
class Verified:
    """What verification learned about a good file."""

    rows: int  # data records, header excluded
    compressed_bytes: int
    uncompressed_bytes: int
    sha256: str
    header: tuple[str, ...]
    note: str | None = None  # e.g. accepted despite a gzip-MTIME-only manifest difference


class _GzipProblem(Exception):
    pass


def _describe_start(head: bytes) -> str:
    text = head[:80].decode("utf-8", "replace").strip()
    low = text.lower()
    if low.startswith(("<!doctype html", "<html")) or "<html" in low:
        return "an HTML page, not the release file (a proxy, login or error page?)"
    if not text:
        return "empty"
    first = text.splitlines()[0][:60]
    return f"it starts with {first!r}"


def _gunzip(path: Path, hasher: hashlib._Hash) -> Iterator[bytes]:
    """Yield the decompressed bytes of every gzip member; hash the raw bytes as read."""
    with path.open("rb") as fh:
        first = fh.read(READ_CHUNK)
        if not first.startswith(GZIP_MAGIC):
            raise _GzipProblem(f"not a gzip file: {_describe_start(first)}")
        d = _inflate.decompressobj(31)
        consumed = 0
        chunk = first
        while chunk:
            hasher.update(chunk)
            pending = chunk
            while pending:
                if d.eof:  # another member must start right here
                    if not GZIP_MAGIC.startswith(pending[:2]) or not pending:
                        at = consumed + len(chunk) - len(pending)
                        raise _GzipProblem(f"trailing garbage after the gzip stream at byte {at:,}")
                    d = _inflate.decompressobj(31)
                data = pending
                while True:  # in bounded slices: the output may be 1000x the input
                    try:
                        out = d.decompress(data, INFLATE_CHUNK)
                    except _INFLATE_ERRORS as exc:
                        raise _GzipProblem(f"corrupt gzip data ({exc})") from exc
                    if out:
                        yield out
                    data = d.unconsumed_tail
                    if d.eof or (not data and len(out) < INFLATE_CHUNK):
                        break
                pending = d.unused_data if d.eof else b""
            consumed += len(chunk)
            chunk = fh.read(READ_CHUNK)
        if not d.eof:
            raise _GzipProblem("the gzip stream ends early (a truncated download)")


def _slices(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Regroup zlib output into slices of about SCAN_CHUNK bytes."""
    buf: list[bytes] = []
    size = 0
    try:
        for chunk in chunks:
            buf.append(chunk)
            size += len(chunk)
            if size >= SCAN_CHUNK:
                yield b"".join(buf)
                buf, size = [], 0
    except _GzipProblem:
        if buf:  # check what did decompress, so the error can name the line it stops at
            yield b"".join(buf)
        raise
    if buf:
        yield b"".join(buf)


def _prefetch(items: Iterator[bytes], depth: int = 3) -> Iterator[bytes]:
    """Run `items` in a thread, `depth` ahead: zlib and numpy both release the GIL, so
    decompression and scanning overlap on two cores."""
    queue: Queue[tuple[bytes | None, BaseException | None]] = Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                queue.put((item, None))
            queue.put((None, None))
        except BaseException as exc:  # handed to the consumer, raised there
            queue.put((None, exc))

    worker = threading.Thread(target=produce, name="taxi-cli-gunzip", daemon=True)
    worker.start()
    try:
        while True:
            item, error = queue.get()
            if error is not None:
                raise error
            if item is None:
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(Empty):
                queue.get(timeout=0.05)
        worker.join()


class _NeedsExactScan(Exception):
    pass


def _header_fields(line: bytes) -> tuple[str, ...]:
    text = line.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace").rstrip("\r\n")
    return tuple(next(csv.reader([text])))


def _same(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return len(a) == len(b) and all(x.lower() == y.lower() for x, y in zip(a, b, strict=True))


def check_header(name: str, taxi: TaxiType, header: tuple[str, ...]) -> None:
    """Accept the taxi type's released headers (any letter case); else say whose it is."""
    if any(_same(header, h) for h in taxi.accepted_headers):
        return
    for other in TAXIS.values():
        if other is not taxi and any(_same(header, h) for h in other.accepted_headers):
            raise VerifyError(
                name,
                f"header is {other.name}'s, expected {taxi.name}'s "
                f"(the file is not a {taxi.name} trip file)",
                1,
            )
    shown = ",".join(header)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise VerifyError(
        name,
        f"unexpected header {shown!r}, expected {taxi.name}'s "
        f"({len(taxi.header)} columns starting {taxi.header[0]},{taxi.header[1]})",
        1,
    )


class _FastScan:
    """Counts records and checks their field count in bulk, slice by slice."""

    def __init__(self, name: str, taxi: TaxiType) -> None:
        self.name = name
        self.taxi = taxi
        self.commas = 0
        self.header: tuple[str, ...] | None = None
        self.carry = b""
        self.line = 1  # physical lines completed (the header is line 1)
        self.blank_at: int | None = None  # first blank line, fine only if at the end
        self.uncompressed = 0

    def feed(self, data: bytes) -> None:
        self.uncompressed += len(data)
        buf = self.carry + data if self.carry else data
        if self.header is None:
            end = buf.find(b"\n")
            if end < 0:
                if len(buf) > 1 << 16:
                    raise VerifyError(self.name, "no header line in the first 64 KiB", 1)
                self.carry = buf
                return
            self.header = _header_fields(buf[: end + 1])
            check_header(self.name, self.taxi, self.header)
            self.commas = len(self.header) - 1
            buf = buf[end + 1 :]
        last = buf.rfind(b"\n")
        self.carry = buf[last + 1 :]
        if last >= 0:
            if buf.find(b'"', 0, last + 1) >= 0:
                raise _NeedsExactScan
            view = memoryview(buf)
            start = 0
            while start <= last:  # blocks of about CHECK_BLOCK bytes, each ending at a \n
                end = buf.rfind(b"\n", start, start + CHECK_BLOCK)
                if end < 0:  # one line longer than the block: to its end (then an error)
                    end = buf.find(b"\n", start + CHECK_BLOCK)
                self._check(view[start : end + 1])
                start = end + 1
        if len(self.carry) > MAX_LINE:  # binary or not line-based: do not buffer it all
            self._too_long(self.line + 1)

    def _too_long(self, line: int) -> None:
        raise VerifyError(
            self.name,
            f"a line longer than {MAX_LINE:,} bytes (a trip record is ~200): not a CSV "
            "trip file; re-download it with --force or check the source",
            line,
        )

    def _check(self, block: memoryview) -> None:
        """Check whole lines (`block` ends with a newline); vectorized, no per-line loop."""
        import numpy as np  # here, not at the top: a cached `extract` never needs it

        arr = np.frombuffer(block, dtype=np.uint8)
        newlines = np.flatnonzero(arr == 10)
        lengths = np.diff(newlines, prepend=-1) - 1  # without the \n
        too_long = np.flatnonzero(lengths > MAX_LINE)
        if too_long.size:
            self._too_long(self.line + 1 + int(too_long[0]))
        comma_pos = np.flatnonzero(arr == 44)
        per_line = np.diff(np.searchsorted(comma_pos, newlines), prepend=0)
        del comma_pos
        bad = per_line != self.commas
        bad_count = int(np.count_nonzero(bad))
        if bad_count:
            starts = newlines - lengths
            blank = bad & ((lengths == 0) | ((lengths == 1) & (arr[starts] == 13)))
            wrong = np.flatnonzero(bad & ~blank)
            blanks = np.flatnonzero(blank)
            if wrong.size:
                i = int(wrong[0])
                if self.blank_at is None and blanks.size and int(blanks[0]) < i:
                    self.blank_at = self.line + 1 + int(blanks[0])
                self._fail(self.line + 1 + i, int(per_line[i]) + 1)
            if self.blank_at is None and blanks.size:
                self.blank_at = self.line + 1 + int(blanks[0])
        if self.blank_at is not None and bad_count < len(newlines):
            # some line after the first blank one has content: the blank is mid-file
            nonblank_after = np.flatnonzero(~bad)
            if nonblank_after.size and self.line + 1 + int(nonblank_after[-1]) > self.blank_at:
                raise VerifyError(self.name, "empty line inside the file", self.blank_at)
        self.line += len(newlines)

    def _fail(self, line: int, fields: int) -> None:
        expected = self.commas + 1
        if fields < expected:
            what = f"{fields} fields, expected {expected}: a short record (truncated download?)"
        else:
            what = f"{fields} fields, expected {expected}"
        raise VerifyError(self.name, what, line)

    def finish(self) -> int:
        """Check the last record (no final newline) and return the data row count."""
        if self.header is None:
            if not self.carry.strip():
                raise VerifyError(self.name, "the file is empty", 1)
            self.header = _header_fields(self.carry)
            check_header(self.name, self.taxi, self.header)
            return 0
        tail = self.carry.rstrip(b"\r")
        if tail:
            fields = tail.count(b",") + 1
            if b'"' in tail:
                raise _NeedsExactScan
            if fields != self.commas + 1:
                self._fail(self.line + 1, fields)
            if self.blank_at is not None:
                raise VerifyError(self.name, "empty line inside the file", self.blank_at)
            self.line += 1
        rows = self.line - 1
        if self.blank_at is not None:
            rows = self.blank_at - 2
        return rows


def _exact_rows(name: str, taxi: TaxiType, text_lines: Iterator[str]) -> int:
    """The slow, exact scan with the csv module (quoted fields, embedded newlines)."""
    reader = csv.reader(text_lines)
    try:
        return _exact_records(name, taxi, reader)
    except csv.Error as exc:  # e.g. an unclosed quote swallowing the rest of the file
        raise VerifyError(name, f"not valid CSV ({exc})", reader.line_num) from exc


def _exact_records(name: str, taxi: TaxiType, reader: Any) -> int:
    header = next(reader, None)
    if header is None:
        raise VerifyError(name, "the file is empty", 1)
    header_t = tuple(header)
    if header_t and header_t[0].startswith("\ufeff"):
        header_t = (header_t[0][1:], *header_t[1:])
    check_header(name, taxi, header_t)
    rows = 0
    blank_at: int | None = None
    for record in reader:
        if not record:
            blank_at = blank_at or reader.line_num
            continue
        if blank_at is not None:
            raise VerifyError(name, "empty line inside the file", blank_at)
        if len(record) != len(header_t):
            expected = len(header_t)
            short = ": a short record (truncated download?)" if len(record) < expected else ""
            raise VerifyError(
                name, f"{len(record)} fields, expected {expected}{short}", reader.line_num
            )
        rows += 1
    return rows


def _iter_text(path: Path, name: str) -> Iterator[str]:
    """The decompressed text, line by line, each at most MAX_LINE characters."""

    def raw() -> Iterator[bytes]:
        yield from _gunzip(path, hashlib.sha256())

    stream = io.TextIOWrapper(
        io.BufferedReader(_IterRaw(raw())), encoding="utf-8-sig", errors="replace", newline=""
    )
    number = 0
    while line := stream.readline(MAX_LINE + 1):
        number += 1
        if len(line) > MAX_LINE:
            raise VerifyError(
                name,
                f"a line longer than {MAX_LINE:,} characters (a trip record is ~200): not a "
                "CSV trip file; re-download it with --force or check the source",
                number,
            )
        yield line


class _IterRaw(io.RawIOBase):
    """A read-only raw stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            try:
                self._buf = memoryview(next(self._chunks))  # a view: no copy per read
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _check_size(name: str, size: int, entry: ManifestEntry | None) -> None:
    if entry is not None and size != entry.size:
        raise ManifestMismatch(
            name, f"size {size:,} bytes, the release manifest says {entry.size:,}"
        )


def mtime_only_difference(path: Path, entry: ManifestEntry) -> int | None:
    """The MTIME in `MTIME_WINDOW` that makes the file hash to the manifest's sha256.

    Each candidate needs a full re-hash (the MTIME sits in the first block), so the 61
    candidates are split over threads; hashlib releases the GIL on large updates.
    """
    with path.open("rb") as fh:
        head = fh.read(10)
    if len(head) < 10 or not head.startswith(GZIP_MAGIC):
        return None

    def try_some(mtimes: list[int]) -> int | None:
        hashers = {m: hashlib.sha256(head[:4] + m.to_bytes(4, "little") + head[8:]) for m in mtimes}
        with path.open("rb") as fh:
            fh.seek(10)
            while chunk := fh.read(READ_CHUNK):
                for h in hashers.values():
                    h.update(chunk)
        return next((m for m, h in hashers.items() if h.hexdigest() == entry.sha256), None)

    workers = max(1, min(4, os.cpu_count() or 1))
    groups = [list(MTIME_WINDOW)[i::workers] for i in range(workers)]
    with ThreadPoolExecutor(workers, thread_name_prefix="taxi-cli-mtime") as pool:
        found = [m for m in pool.map(try_some, groups) if m is not None]
    return found[0] if found else None


def verify_trip_file(
    path: Path, taxi: TaxiType, entry: ManifestEntry | None = None, *, name: str | None = None
) -> Verified:
    """Verify a downloaded `.csv.gz` of `taxi` (see the module doc); raise VerifyError."""
    name = name or path.name.removesuffix(".part")
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(512)
    if not head.startswith(GZIP_MAGIC):  # say what it is rather than that its size is off
        raise VerifyError(name, f"not a gzip file: {_describe_start(head)}")
    _check_size(name, size, entry)
    hasher = hashlib.sha256()
    scan = _FastScan(name, taxi)
    try:
        try:
            for piece in _prefetch(_slices(_gunzip(path, hasher))):
                scan.feed(piece)
        except _GzipProblem as exc:
            line = scan.line + 1 if scan.header is not None else None
            raise VerifyError(name, str(exc), line) from exc
        rows = scan.finish()
        uncompressed = scan.uncompressed
    except _NeedsExactScan:
        hasher = _sha256_of(path)  # the fast pass stopped early: hash it all
        try:
            rows = _exact_rows(name, taxi, _iter_text(path, name))
        except _GzipProblem as exc:
            raise VerifyError(name, str(exc)) from exc
        uncompressed = sum(len(c) for c in _gunzip(path, hashlib.sha256()))
    sha = hasher.hexdigest()
    note = _manifest_note(path, name, sha, entry)
    return Verified(rows, size, uncompressed, sha, scan.header or taxi.header, note)


def verify_scanned(
    path: Path,
    taxi: TaxiType,
    entry: ManifestEntry,
    *,
    sha256: str,
    read_bytes: int,
    uncompressed_bytes: int,
    rows: int,
    name: str,
) -> Verified:
    """The verdict on a downloaded file from what one pass over it measured: the load
    pass that inflated it to its end (gzip CRC and length checked), took its header and
    split its records, hashing the compressed bytes as it read them. Size and sha256
    must then be the release manifest's (an MTIME-only difference is accepted with a
    note, as by `verify_trip_file`): the manifest names the exact bytes, so nothing
    else about them can be wrong. Raises ManifestMismatch / VerifyError."""
    size = path.stat().st_size
    if read_bytes != size:  # a pass that stopped early hashed only a prefix
        raise VerifyError(name, f"the pass read {read_bytes:,} of its {size:,} bytes")
    _check_size(name, size, entry)
    note = _manifest_note(path, name, sha256, entry)
    return Verified(rows, size, uncompressed_bytes, sha256, taxi.header, note)


def _sha256_of(path: Path) -> hashlib._Hash:
    hasher = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(READ_CHUNK):
            hasher.update(chunk)
    return hasher


def _manifest_note(path: Path, name: str, sha: str, entry: ManifestEntry | None) -> str | None:
    """None when the sha256 matches (or no entry); a note for an MTIME-only difference."""
    if entry is None or sha == entry.sha256:
        return None
    mtime = mtime_only_difference(path, entry)
    if mtime is None:
        raise ManifestMismatch(
            name,
            f"sha256 {sha[:12]}… differs from the release manifest's {entry.sha256[:12]}… "
            "(same size, different content)",
        )
    return (
        f"{name} differs from the release manifest only in the gzip timestamp "
        "(re-uploaded asset); content verified"
    )


def verify_zones(path: Path, entry: ManifestEntry | None = None) -> Verified:
    """Verify the zone lookup: the header, 4 fields a row, integer ids, 265 rows."""
    name = path.name.removesuffix(".part")
    data = path.read_bytes()
    _check_size(name, len(data), entry)
    sha = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise VerifyError(name, f"not UTF-8 text: {_describe_start(data)}") from exc
    if text.lstrip().lower().startswith(("<!doctype html", "<html")):
        raise VerifyError(name, f"not the zone lookup: {_describe_start(data)}", 1)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = tuple(next(reader, []))
    expected = tuple(c.name for c in ZONES_COLUMNS)
    if not _same(header, expected):
        raise VerifyError(
            name, f"unexpected header {','.join(header)!r}, expected {','.join(expected)!r}", 1
        )
    rows = 0
    for record in reader:
        if not record:
            continue
        if len(record) != len(expected):
            raise VerifyError(
                name, f"{len(record)} fields, expected {len(expected)}", reader.line_num
            )
        if not record[0].strip().isdigit():
            raise VerifyError(name, f"LocationID {record[0]!r} is not an integer", reader.line_num)
        rows += 1
    if rows != ZONES_ROWS:
        raise VerifyError(
            name, f"{rows} zones, expected {ZONES_ROWS} (a truncated or different file?)"
        )
    if entry is not None and sha != entry.sha256:
        raise ManifestMismatch(
            name,
            f"sha256 {sha[:12]}… differs from the release manifest's {entry.sha256[:12]}…",
        )
    return Verified(rows, len(data), len(data), sha, header)
