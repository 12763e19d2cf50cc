"""`extract`: download, verify and cache the monthly release files.

`ensure_file` returns an `Extracted` for a verified local `.csv.gz`, downloading it only
when no verified copy is cached. A download goes to `{file}.part` (resumed with HTTP
Range when a previous attempt left one), is verified (`taxi_cli.verify`), and only then
renamed to its final name, so the final name only ever holds a verified file. A file
that fails verification is fetched once more from scratch; a second failure is an
error, and neither copy is kept.

A verified file gets a sidecar `{file}.verified.json` (size, mtime, sha256, rows,
uncompressed bytes): while the file's size and mtime match it, and its sha256 is the
release manifest's, a later run trusts it without reading the file again. A missing,
stale, incomplete, unreadable or other-version sidecar means verify again, never a crash.

A read-only data dir with verified files serves them (nothing needs writing then); any
other operating-system error is one line naming the path (`taxi_cli.oserrors`).

`prepare` is the load loop's way in: a download the release manifest knows, for a
destination whose load reads the whole file in one pass (pg), is handed to that pass
unverified (`Extracted.settle`), so a first load inflates the file once, not twice. It
ends exactly as above: verified -> final name and sidecar; bad -> discarded, fetched
once more and verified here first (`refetch`). The file lock is held until then.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from rich.progress import Progress, TaskID

from taxi_cli.catalog import (
    ZONES_FILE,
    ManifestEntry,
    Partition,
    TaxiType,
    manifest,
    taxi_url,
    zones_url,
)
from taxi_cli.config import Settings
from taxi_cli.console import Output, add_task
from taxi_cli.errors import ConfigError, DataError, DownloadError, TaxiError
from taxi_cli.model import Extracted, Scanned
from taxi_cli.oserrors import DATA_DIR_HINT, disk_error, os_error_of
from taxi_cli.redact import mask_url
from taxi_cli.verify import (
    Verified,
    VerifyError,
    verify_scanned,
    verify_trip_file,
    verify_zones,
)

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("taxi_cli.extract")

SIDECAR_SUFFIX = ".verified.json"
SIDECAR_VERSION = 1
MIB = 1 << 20


# ---- locations and manifest ---------------------------------------------------------------


def data_file(cfg: Settings, taxi: TaxiType, month: str) -> Path:
    """Where the verified file of (taxi, month) lives."""
    return cfg.data_path / taxi.name / taxi.file_name(month)


def zones_file(cfg: Settings) -> Path:
    return cfg.data_path / "misc" / ZONES_FILE


def load_manifest(cfg: Settings) -> dict[str, ManifestEntry]:
    """The release manifest to verify against: shipped, `none`, or a CSV file."""
    if not cfg.manifest:
        return manifest()
    if cfg.manifest.strip().lower() == "none":
        return {}
    path = Path(cfg.manifest).expanduser()
    try:
        with path.open(newline="") as fh:
            entries = {
                row["filename"]: ManifestEntry(
                    row["filename"], int(row["size_bytes"]), row["sha256"].lower()
                )
                for row in csv.DictReader(fh)
            }
    except OSError as exc:
        raise disk_error(exc, path, config="TAXI_MANIFEST / --manifest") from exc
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"cannot read the manifest {path} (TAXI_MANIFEST): {exc}; it needs the columns "
            "filename,size_bytes,sha256 (or set it to `none`)"
        ) from exc
    return entries


# ---- the verified-file sidecar ------------------------------------------------------------


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


# the fields a sidecar must hold, with their types, before it is trusted
_SIDECAR_FIELDS: dict[str, type | tuple[type, ...]] = {
    "file": str,
    "size": int,
    "mtime_ns": int,
    "sha256": str,
    "rows": int,
    "uncompressed_bytes": int,
    "note": (str, type(None)),
}


def _read_sidecar(path: Path, expected_sha256: str | None = None) -> dict[str, Any] | None:
    """The sidecar's record when it still describes `path` exactly, else None (verify
    again): complete, this version, this file's size and mtime, and, when the manifest
    knows the file, made from its sha256 (or accepted with a note)."""
    try:
        meta = json.loads(sidecar_path(path).read_text())
        st = path.stat()
    except (OSError, ValueError):  # missing, unreadable, not JSON, not UTF-8
        return None
    if not isinstance(meta, dict) or meta.get("version") != SIDECAR_VERSION:
        return None
    for key, kind in _SIDECAR_FIELDS.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            return None
    if (
        meta["file"] != path.name
        or meta["size"] != st.st_size
        or meta["mtime_ns"] != st.st_mtime_ns
    ):
        return None
    if expected_sha256 and meta["sha256"] != expected_sha256 and not meta["note"]:
        return None  # made from other content than the release manifest names
    return meta


def cached_sha256(cfg: Settings, taxi: TaxiType, month: str) -> str | None:
    """The sha256 of the cached verified file of (taxi, month), None when not cached.

    Only verified files carry the final name; their sidecar holds the sha256 while the
    file's size and mtime match it, else the file is hashed (no download, no parse).
    """
    path = data_file(cfg, taxi, month)
    meta = _read_sidecar(path)
    if meta is not None and isinstance(meta.get("sha256"), str):
        return str(meta["sha256"])
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _write_sidecar(
    path: Path, verified: Verified, validators: tuple[str | None, str | None] = (None, None)
) -> None:
    """Record the verification; on a read-only data dir, skip it (verify again next time).

    `validators`: the downloaded asset's ETag and Last-Modified, the upstream version
    the ledger records (unknown for a file verified again from the cache)."""
    try:
        _write_sidecar_file(path, verified, validators)
    except OSError as exc:
        log.debug("cannot write the sidecar of %s (%s); it will be verified again", path, exc)


def _write_sidecar_file(
    path: Path, verified: Verified, validators: tuple[str | None, str | None] = (None, None)
) -> None:
    st = path.stat()
    meta = {
        "version": SIDECAR_VERSION,
        "file": path.name,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256": verified.sha256,
        "rows": verified.rows,
        "uncompressed_bytes": verified.uncompressed_bytes,
        "header": list(verified.header),
        "note": verified.note,
        "etag": validators[0],
        "last_modified": validators[1],
    }
    side = sidecar_path(path)
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, side)


# ---- progress -----------------------------------------------------------------------------


@dataclass
class _Bars:
    """One bar per file plus an overall bar (bytes), or nothing when progress is hidden."""

    progress: Progress | None
    overall: TaskID | None = None
    done_before: int = 0  # bytes of the files already finished
    hook: Callable[[int, int | None], None] | None = None  # the caller's own byte display

    def file_bar(self, name: str) -> _FileBar:
        return _FileBar(self, name)


class _FileBar:
    """The bar of one file: bytes while downloading, then `verifying`, then removed."""

    def __init__(self, bars: _Bars, name: str) -> None:
        self.bars = bars
        self.name = name
        self.done = 0
        self.task = bars.progress.add_task(name, total=None) if bars.progress else None

    def update(self, done: int, total: int | None) -> None:
        if self.bars.hook is not None:
            self.bars.hook(done, total)
        progress = self.bars.progress
        if progress is None or self.task is None:
            return
        self.done = done
        progress.update(self.task, completed=done, total=total)
        if self.bars.overall is not None:
            progress.update(self.bars.overall, completed=self.bars.done_before + done)

    def verifying(self) -> None:
        if self.bars.progress is not None and self.task is not None:
            self.bars.progress.update(self.task, description=f"verifying {self.name}")

    def finish(self) -> None:
        if self.bars.progress is not None and self.task is not None:
            self.bars.done_before += self.done
            self.bars.progress.remove_task(self.task)
            self.task = None


@contextmanager
def _bars_for(out: Output | None, total: int | None, files: int) -> Iterator[_Bars]:
    if out is None:
        yield _Bars(None)
        return
    with out.transfer_progress() as progress:
        overall = add_task(progress, f"all {files} files", total) if files > 1 else None
        yield _Bars(progress, overall)


# ---- one file -----------------------------------------------------------------------------


def _from_sidecar(
    meta: dict[str, Any], taxi: str, month: str | None, path: Path, url: str
) -> Extracted:
    return Extracted(
        taxi=taxi,
        month=month,
        path=path,
        rows=int(meta["rows"]),
        compressed_bytes=int(meta["size"]),
        uncompressed_bytes=int(meta["uncompressed_bytes"]),
        sha256=str(meta["sha256"]),
        cached=True,
        note=meta.get("note"),
        url=mask_url(url),  # --json prints it: never the credentials
    )


def _ensure(cfg: Settings, *, final: Path, **kwargs: Any) -> Extracted | _Pending:
    """`_ensure_locked` under a per-file lock: a second process fetching the same file
    waits, then finds it cached, instead of writing into the same `.part`. A pending
    file keeps the lock until it is settled (`_Pending.finish`)."""
    with ExitStack() as lock:
        lock.enter_context(_file_lock(cfg, final))
        got = _ensure_locked(cfg, final=final, **kwargs)
        if isinstance(got, _Pending):
            got.lock = lock.pop_all()
        return got


# a data dir that cannot take a lock file can take no download either: reading is all
# that can happen there, and readers need no lock
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def _open_lock(cfg: Settings, final: Path) -> IO[str] | None:
    """The lock file of `final`, opened; None on a read-only data dir that has `final`."""
    locks = cfg.data_path / ".locks"
    try:
        if cfg.data_path.exists() and not cfg.data_path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(cfg.data_path))
        locks.mkdir(parents=True, exist_ok=True)
        return (locks / f"{final.parent.name}.{final.name}.lock").open("a")
    except OSError as exc:
        if exc.errno in _READ_ONLY and final.exists():
            log.debug("no lock for %s (%s): the data dir is read-only", final.name, exc)
            return None
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
            raise disk_error(exc, locks) from exc
        # the configured data dir itself is unusable: a file, read-only, not ours (exit 2)
        raise disk_error(exc, cfg.data_path, config=DATA_DIR_HINT) from exc


@contextmanager
def _file_lock(cfg: Settings, final: Path) -> Iterator[None]:
    fh = _open_lock(cfg, final)
    if fh is None:
        yield
        return
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another taxi-cli that is fetching %s", final.name)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _ensure_locked(cfg: Settings, *, final: Path, **kwargs: Any) -> Extracted | _Pending:
    """The cache-or-download-and-verify cycle shared by trip files and the zone lookup."""
    try:
        return _cycle(cfg, final=final, **kwargs)
    except OSError as exc:  # whatever path it was, one line naming it (never a traceback)
        raise disk_error(exc) from exc


def _cycle(
    cfg: Settings,
    *,
    taxi: str,
    month: str | None,
    final: Path,
    url: str,
    check: Callable[[Path], Verified],
    not_found: str,
    force: bool,
    client: Http,
    bars: _Bars,
    entry: ManifestEntry | None,
    defer: TaxiType | None = None,
    attempts: tuple[int, ...] = (1, 2),
) -> Extracted | _Pending:
    """`defer`: hand a download the manifest knows to the load pass, unverified."""
    name = final.name
    part = final.with_name(name + ".part")
    if final.exists() and not force:
        meta = _read_sidecar(final, entry.sha256 if entry else None)
        if meta is not None:
            return _from_sidecar(meta, taxi, month, final, url)
        began = time.monotonic()
        try:
            verified = check(final)
        except VerifyError as exc:
            log.warning("%s; the cached copy is bad, downloading it again", exc)
            sidecar_path(final).unlink(missing_ok=True)
            final.unlink()
        except OSError as exc:
            raise disk_error(exc, final) from exc
        else:
            _write_sidecar(final, verified)
            spent = time.monotonic() - began
            return _extracted(taxi, month, final, verified, url, cached=True, verify_s=spent)
    from taxi_cli import download  # httpx is imported only when something is fetched

    if force:
        download.discard(part)  # --force means a fresh download, not a resumed one
    for attempt in attempts:
        bar = bars.file_bar(name)
        began = time.monotonic()
        fetched = began
        try:
            try:
                if not _whole(part, entry):  # one a killed run left complete is not fetched again
                    download.fetch(
                        client.get(),
                        url,
                        part,
                        cfg,
                        expected_size=entry.size if entry else None,
                        progress=bar.update,
                    )
                fetched = time.monotonic()
            except download.NotFound as exc:
                download.discard(part)
                raise DownloadError(f"{name}: {exc}; {not_found}") from exc
            if defer is not None and entry is not None:
                return _Pending(defer, month, final, part, entry, url, fetched - began)
            bar.verifying()
            verified = check(part)
        except VerifyError as exc:
            download.discard(part)  # a bad .part must not be resumed by the next run
            if attempt == 1:
                log.warning("%s; downloading it once more from scratch", exc)
                continue
            raise DataError(
                f"{exc}; downloaded twice and both copies failed verification, "
                f"so nothing was kept: check the source ({mask_url(url)}) and run again later"
            ) from exc
        finally:
            bar.finish()
        _promote(part, final, verified)
        timings = {"download_s": fetched - began, "verify_s": time.monotonic() - fetched}
        return _extracted(taxi, month, final, verified, url, cached=False, **timings)
    raise AssertionError("unreachable")  # pragma: no cover


def _whole(part: Path, entry: ManifestEntry | None) -> bool:
    """A `.part` as long as the manifest's file, with its validator: the download is
    complete (verification judges its bytes), so asking for the rest would get a 416."""
    from taxi_cli import download

    try:
        return entry is not None and part.stat().st_size == entry.size and download.resumable(part)
    except OSError:
        return False


def _promote(part: Path, final: Path, verified: Verified, *, synced: bool = False) -> None:
    """Give a verified download its final name and sidecar (with the asset's validators);
    `synced`: its bytes were fsynced already."""
    from taxi_cli import download

    sidecar_path(final).unlink(missing_ok=True)
    _durable_replace(part, final, synced=synced)
    validators = download.validators(part)  # which asset version this is
    download.discard(part)
    _write_sidecar(final, verified, validators)
    if verified.note:
        log.warning("%s", verified.note)


def _fsync(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            os.fsync(fh.fileno())
    except OSError as exc:  # the rename's own fsync tries again, and raises
        log.debug("fsync of %s: %s", path, exc)
        return False
    return True


def _durable_replace(src: Path, dest: Path, *, synced: bool = False) -> None:
    """Rename `src` over `dest` so that a power loss leaves one or the other, whole."""
    if not synced:
        with src.open("rb") as fh:
            os.fsync(fh.fileno())
    os.replace(src, dest)
    dir_fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _extracted(
    taxi: str,
    month: str | None,
    path: Path,
    v: Verified,
    url: str,
    *,
    cached: bool,
    download_s: float = 0.0,
    verify_s: float = 0.0,
) -> Extracted:
    return Extracted(
        taxi=taxi,
        month=month,
        path=path,
        rows=v.rows,
        compressed_bytes=v.compressed_bytes,
        uncompressed_bytes=v.uncompressed_bytes,
        sha256=v.sha256,
        cached=cached,
        note=v.note,
        url=mask_url(url),  # --json prints it: never the credentials
        download_seconds=download_s,
        verify_seconds=verify_s,
    )


class Http:
    """The caller's httpx client, or one made on first use and closed by `close`: a run
    that finds everything cached never imports httpx (a cached hit stays fast)."""

    def __init__(self, cfg: Settings, client: httpx.Client | None = None) -> None:
        self.cfg = cfg
        self._client = client
        self._own: httpx.Client | None = None

    def get(self) -> httpx.Client:
        if self._client is None:
            from taxi_cli.download import make_client

            self._own = self._client = make_client(self.cfg)
        return self._client

    def close(self) -> None:
        if self._own is not None:
            self._own.close()


@contextmanager
def _client(cfg: Settings, client: httpx.Client | Http | None) -> Iterator[Http]:
    if isinstance(client, Http):
        yield client
        return
    http = Http(cfg, client)
    try:
        yield http
    finally:
        http.close()


def ensure_file(
    cfg: Settings,
    taxi: TaxiType,
    month: str,
    *,
    force: bool = False,
    parquet: bool = False,
    out: Output | None = None,
    client: httpx.Client | Http | None = None,
    on_bytes: Callable[[int, int | None], None] | None = None,
    _bars: _Bars | None = None,
    _http: Http | None = None,
) -> Extracted:
    """Return the verified file for (taxi, month), downloading it if needed.

    `on_bytes(done, total)` follows the download (the backfill's own progress lines).

    Raises DownloadError (404, retries exhausted) or DataError (failed verification
    twice); nothing is left under the final name then.
    """
    got = _trip_file(
        cfg,
        taxi,
        month,
        force=force,
        out=out,
        client=client,
        on_bytes=on_bytes,
        bars=_bars,
        http=_http,
    )
    assert isinstance(got, Extracted)
    result = got
    if parquet:
        from taxi_cli.parquet import parquet_path_for, to_parquet

        try:
            result = replace(result, parquet_path=to_parquet(result, taxi, force=force))
        except Exception as exc:  # a full disk: Polars says so in an error of its own
            failed = os_error_of(exc)
            if failed is None:
                raise
            raise disk_error(failed, parquet_path_for(result.path)) from exc
    return result


# ---- a first download that its load pass verifies (one decompression per first load) ----


class _Pending:
    """A download the release manifest knows, handed to the load pass unverified.

    The pass verifies it as it loads (`settle`, see `Extracted`): one inflate and one
    scan instead of two. `finish` then does what verification here would have done:
    a verified file gets its final name and sidecar; a failed one is discarded (the
    job fetches it again, verified first); a file no pass settled (the load was
    skipped or failed before reading it) is verified on its own. The file lock is held
    until then, so a second process waits and then finds the file cached."""

    def __init__(
        self,
        taxi: TaxiType,
        month: str | None,
        final: Path,
        part: Path,
        entry: ManifestEntry,
        url: str,
        download_s: float,
    ) -> None:
        from taxi_cli import download

        self.taxi, self.month, self.final, self.part = taxi, month, final, part
        self.entry, self.url, self.download_s = entry, url, download_s
        self.etag, self.last_modified = download.validators(part)  # the asset's version
        self.lock: ExitStack | None = None
        self.verified: Verified | None = None
        self.failure: VerifyError | None = None
        self.verify_s = 0.0
        # the download's bytes reach the disk while the load runs, not after it
        self._synced: list[bool] = []
        self._syncing = threading.Thread(
            target=lambda: self._synced.append(_fsync(part)), name="taxi-cli-fsync"
        )
        self._syncing.start()

    @property
    def extracted(self) -> Extracted:
        return Extracted(
            taxi=self.taxi.name,
            month=self.month,
            path=self.part,
            rows=0,
            compressed_bytes=self.entry.size,
            uncompressed_bytes=0,
            sha256=self.entry.sha256,  # what it must be: the ledger-hit test compares it
            cached=False,
            url=mask_url(self.url),
            download_seconds=self.download_s,
            etag=self.etag,
            last_modified=self.last_modified,
            file_name=self.final.name,
            settle=self.settle,
        )

    def settle(self, scanned: Scanned | None) -> Extracted:
        began = time.monotonic()
        try:
            if scanned is None:
                verified = verify_trip_file(self.part, self.taxi, self.entry, name=self.final.name)
            else:
                verified = verify_scanned(
                    self.part,
                    self.taxi,
                    self.entry,
                    sha256=scanned.sha256,
                    read_bytes=scanned.compressed_bytes,
                    uncompressed_bytes=scanned.uncompressed_bytes,
                    rows=scanned.rows,
                    name=self.final.name,
                )
        except VerifyError as exc:
            self.failure = exc
            raise
        except OSError as exc:
            raise disk_error(exc, self.part) from exc
        finally:
            self.verify_s += time.monotonic() - began
        self.verified = verified
        return self._result(verified)

    def _result(self, verified: Verified) -> Extracted:
        found = _extracted(
            self.taxi.name,
            self.month,
            self.final,
            verified,
            self.url,
            cached=False,
            download_s=self.download_s,
            verify_s=self.verify_s,
        )
        return replace(found, etag=self.etag, last_modified=self.last_modified)

    def finish(self) -> Extracted | None:
        """Settle the file's place in the cache and release its lock: the verified file
        under its final name, or None when it was discarded."""
        from taxi_cli import download

        try:
            if self.failure is None and self.verified is None:
                with contextlib.suppress(VerifyError):  # recorded in self.failure
                    self.settle(None)
            self._syncing.join()
            if self.failure is not None or self.verified is None:
                download.discard(self.part)  # a bad .part must not be resumed
                return None
            _promote(self.part, self.final, self.verified, synced=self._synced == [True])
            return self._result(self.verified)
        except OSError as exc:
            raise disk_error(exc) from exc
        finally:
            if self.lock is not None:
                self.lock.close()


class Prepared:
    """One partition's file for its load (`prepare`), and what becomes of it after.

    `extracted` is a verified file, or a first download its load pass verifies (its
    `settle` is set). `close()` always runs (try/finally): it puts a pending download
    in the cache or discards it, and releases its lock. `refetch()` is the second try
    after the pass found the download bad: fetched again from scratch and verified
    here, so nothing unverified is handed on twice."""

    def __init__(self, extracted: Extracted, pending: _Pending | None = None) -> None:
        self.extracted = extracted
        self._pending = pending

    @property
    def failed_verification(self) -> VerifyError | None:
        return self._pending.failure if self._pending is not None else None

    def close(self) -> Extracted:
        """The file as it is cached now (what `drop_cache` removes)."""
        if self._pending is None:
            return self.extracted
        pending, self._pending = self._pending, None
        return pending.finish() or self.extracted


def prepare(
    cfg: Settings,
    taxi: TaxiType,
    month: str,
    *,
    verify_in_pass: bool,
    force: bool = False,
    parquet: bool = False,
    client: httpx.Client | Http | None = None,
    on_bytes: Callable[[int, int | None], None] | None = None,
) -> Prepared:
    """`ensure_file`, except that with `verify_in_pass` a download the release manifest
    knows is not verified here: the one load pass that reads it does that (issue 14).
    Cached files, Parquet, and files the manifest does not know are verified first."""
    if not verify_in_pass or parquet:
        return Prepared(
            ensure_file(
                cfg, taxi, month, force=force, parquet=parquet, client=client, on_bytes=on_bytes
            )
        )
    got = _trip_file(cfg, taxi, month, force=force, client=client, on_bytes=on_bytes, defer=True)
    if isinstance(got, _Pending):
        return Prepared(got.extracted, got)
    return Prepared(got)


def refetch(
    cfg: Settings,
    taxi: TaxiType,
    month: str,
    *,
    client: httpx.Client | Http | None = None,
    on_bytes: Callable[[int, int | None], None] | None = None,
) -> Extracted:
    """The second download after a load pass found the first one bad: from scratch,
    verified before it is handed on; a second failure is the usual error."""
    got = _trip_file(cfg, taxi, month, force=True, client=client, on_bytes=on_bytes, attempts=(2,))
    assert isinstance(got, Extracted)
    return got


def _trip_file(
    cfg: Settings,
    taxi: TaxiType,
    month: str,
    *,
    force: bool,
    out: Output | None = None,
    client: httpx.Client | Http | None = None,
    on_bytes: Callable[[int, int | None], None] | None = None,
    bars: _Bars | None = None,
    http: Http | None = None,
    defer: bool = False,
    attempts: tuple[int, ...] = (1, 2),
) -> Extracted | _Pending:
    final = data_file(cfg, taxi, month)
    entry = load_manifest(cfg).get(final.name)
    url = taxi_url(cfg.source_url, taxi, month)
    not_found = f"{taxi.name} releases available: {taxi.window_text()}"

    def check(path: Path) -> Verified:
        return verify_trip_file(path, taxi, entry, name=final.name)

    if on_bytes is not None and bars is None:
        bars = _Bars(None, hook=on_bytes)
    with _client(cfg, http or client) as own_http, _bars_or(out, bars, entry) as own_bars:
        result = _ensure(
            cfg,
            taxi=taxi.name,
            month=month,
            final=final,
            url=url,
            check=check,
            not_found=not_found,
            force=force,
            client=own_http,
            bars=own_bars,
            entry=entry,
            defer=taxi if defer else None,
            attempts=attempts,
        )
    if isinstance(result, _Pending):
        return result
    etag, modified = recorded_validators(final)
    return replace(result, etag=etag, last_modified=modified)


@contextmanager
def _bars_or(
    out: Output | None, bars: _Bars | None, entry: ManifestEntry | None
) -> Iterator[_Bars]:
    if bars is not None:
        yield bars
        return
    with _bars_for(out, entry.size if entry else None, 1) as own:
        yield own


def ensure_zones(
    cfg: Settings,
    *,
    force: bool = False,
    out: Output | None = None,
    client: httpx.Client | Http | None = None,
) -> Extracted:
    """Return the verified zone lookup file, downloading it if needed."""
    final = zones_file(cfg)
    entry = load_manifest(cfg).get(ZONES_FILE)
    url = zones_url(cfg.source_url)
    with _client(cfg, client) as http, _bars_or(out, None, entry) as bars:
        got = _ensure(
            cfg,
            taxi="zones",
            month=None,
            final=final,
            url=url,
            check=lambda path: verify_zones(path, entry),
            not_found=f"the mirror needs misc/{ZONES_FILE} (check --source-url)",
            force=force,
            client=http,
            bars=bars,
            entry=entry,
        )
    assert isinstance(got, Extracted)  # only a trip file is ever deferred
    return got


def each_file(
    cfg: Settings,
    partitions: Sequence[Partition],
    *,
    force: bool = False,
    parquet: bool = False,
    out: Output | None = None,
) -> Iterator[tuple[Partition, Extracted | TaxiError]]:
    """`ensure_file` for each partition in turn, with one HTTP client and one progress
    display (a bar per file and one for all of them); a failure is yielded, not raised."""
    entries = load_manifest(cfg)
    sizes = [entries.get(p.file_name) for p in partitions]
    total = sum(e.size for e in sizes if e) if all(sizes) else None
    with _client(cfg, None) as http, _bars_for(out, total, len(partitions)) as bars:
        for part in partitions:
            try:
                got = ensure_file(
                    cfg, part.taxi, part.month, force=force, parquet=parquet, _bars=bars, _http=http
                )
            except TaxiError as exc:
                yield part, exc
            else:
                yield part, got


def recorded_validators(path: Path) -> tuple[str | None, str | None]:
    """(ETag, Last-Modified) of the asset the cached file `path` was downloaded as, from
    its sidecar while that still describes the file; (None, None) when not known."""
    meta = _read_sidecar(path)
    if meta is None:
        return None, None
    etag, modified = meta.get("etag"), meta.get("last_modified")
    return (etag if isinstance(etag, str) else None), (
        modified if isinstance(modified, str) else None
    )
