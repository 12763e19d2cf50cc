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
"""

from __future__ import annotations

import csv
import errno
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from rich.progress import Progress, TaskID

from taxi_cli.catalog import (
    MONTH_FORMS,
    TAXIS,
    ZONES_FILE,
    ManifestEntry,
    TaxiType,
    in_window,
    manifest,
    parse_months,
    parse_taxis,
    taxi_url,
    zones_url,
)
from taxi_cli.config import Settings
from taxi_cli.console import Output, add_task
from taxi_cli.errors import ConfigError, DataError, DownloadError, UsageError
from taxi_cli.oserrors import DATA_DIR_HINT, disk_error
from taxi_cli.redact import mask_url
from taxi_cli.verify import Verified, VerifyError, verify_trip_file, verify_zones

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("taxi_cli.extract")

SIDECAR_SUFFIX = ".verified.json"
SIDECAR_VERSION = 1
MIB = 1 << 20


@dataclass(frozen=True)
class Extracted:
    """A verified local release file."""

    taxi: str  # taxi type name, or "zones"
    month: str | None  # None for the zone lookup
    path: Path  # the verified file under its final name
    rows: int  # data rows (header excluded)
    compressed_bytes: int
    uncompressed_bytes: int
    sha256: str  # of the file as stored (the compressed bytes)
    cached: bool  # True when no download was needed
    parquet_path: Path | None = None
    note: str | None = None  # e.g. a manifest mismatch whose content verified
    url: str | None = None  # where it was (or would be) downloaded from

    @property
    def csv_name(self) -> str:
        """The uncompressed file name: the `filename` lineage value in the warehouses."""
        return self.path.name.removesuffix(".gz")

    def as_json(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["path"] = str(self.path)
        payload["parquet_path"] = str(self.parquet_path) if self.parquet_path else None
        payload["uncompressed_mib"] = round(self.uncompressed_bytes / MIB, 2)
        payload["csv_name"] = self.csv_name
        return payload


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


def _write_sidecar(path: Path, verified: Verified) -> None:
    """Record the verification; on a read-only data dir, skip it (verify again next time)."""
    try:
        _write_sidecar_file(path, verified)
    except OSError as exc:
        log.debug("cannot write the sidecar of %s (%s); it will be verified again", path, exc)


def _write_sidecar_file(path: Path, verified: Verified) -> None:
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


def _ensure(cfg: Settings, *, final: Path, **kwargs: Any) -> Extracted:
    """`_ensure_locked` under a per-file lock: a second process fetching the same file
    waits, then finds it cached, instead of writing into the same `.part`."""
    with _file_lock(cfg, final):
        return _ensure_locked(cfg, final=final, **kwargs)


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


def _ensure_locked(cfg: Settings, *, final: Path, **kwargs: Any) -> Extracted:
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
    client: _Http,
    bars: _Bars,
    entry: ManifestEntry | None,
) -> Extracted:
    name = final.name
    part = final.with_name(name + ".part")
    if final.exists() and not force:
        meta = _read_sidecar(final, entry.sha256 if entry else None)
        if meta is not None:
            return _from_sidecar(meta, taxi, month, final, url)
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
            return _extracted(taxi, month, final, verified, url, cached=True)
    from taxi_cli import download  # httpx is imported only when something is fetched

    if force:
        download.discard(part)  # --force means a fresh download, not a resumed one
    for attempt in (1, 2):
        bar = bars.file_bar(name)
        try:
            try:
                download.fetch(
                    client.get(),
                    url,
                    part,
                    cfg,
                    expected_size=entry.size if entry else None,
                    progress=bar.update,
                )
            except download.NotFound as exc:
                download.discard(part)
                raise DownloadError(f"{name}: {exc}; {not_found}") from exc
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
        sidecar_path(final).unlink(missing_ok=True)
        _durable_replace(part, final)
        download.discard(part)
        _write_sidecar(final, verified)
        if verified.note:
            log.warning("%s", verified.note)
        return _extracted(taxi, month, final, verified, url, cached=False)
    raise AssertionError("unreachable")  # pragma: no cover


def _durable_replace(src: Path, dest: Path) -> None:
    """Rename `src` over `dest` so that a power loss leaves one or the other, whole."""
    with src.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(src, dest)
    dir_fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _extracted(
    taxi: str, month: str | None, path: Path, v: Verified, url: str, *, cached: bool
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
    )


class _Http:
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
def _client(cfg: Settings, client: httpx.Client | _Http | None) -> Iterator[_Http]:
    if isinstance(client, _Http):
        yield client
        return
    http = _Http(cfg, client)
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
    client: httpx.Client | None = None,
    _bars: _Bars | None = None,
    _http: _Http | None = None,
) -> Extracted:
    """Return the verified file for (taxi, month), downloading it if needed.

    Raises DownloadError (404, retries exhausted) or DataError (failed verification
    twice); nothing is left under the final name then.
    """
    final = data_file(cfg, taxi, month)
    entry = load_manifest(cfg).get(final.name)
    url = taxi_url(cfg.source_url, taxi, month)
    not_found = f"{taxi.name} releases available: {taxi.window_text()}"

    def check(path: Path) -> Verified:
        return verify_trip_file(path, taxi, entry, name=final.name)

    with _client(cfg, _http or client) as http, _bars_or(out, _bars, entry) as bars:
        result = _ensure(
            cfg,
            taxi=taxi.name,
            month=month,
            final=final,
            url=url,
            check=check,
            not_found=not_found,
            force=force,
            client=http,
            bars=bars,
            entry=entry,
        )
    if parquet:
        from taxi_cli.parquet import to_parquet

        result = replace(result, parquet_path=to_parquet(result, taxi, force=force))
    return result


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
    client: httpx.Client | None = None,
) -> Extracted:
    """Return the verified zone lookup file, downloading it if needed."""
    final = zones_file(cfg)
    entry = load_manifest(cfg).get(ZONES_FILE)
    url = zones_url(cfg.source_url)
    with _client(cfg, client) as http, _bars_or(out, None, entry) as bars:
        return _ensure(
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


# ---- the command --------------------------------------------------------------------------


def plan(taxis: str, months: str | None) -> list[tuple[TaxiType, str]]:
    """The (taxi, month) pairs of the specs; with `all`, only months in each release window."""
    if not months:
        raise UsageError(f"which months? {MONTH_FORMS}")
    taxi_list = parse_taxis(taxis)
    month_list = parse_months(months)
    wants_all = any(p.strip().lower() == "all" for p in taxis.split(","))
    pairs = [
        (t, m)
        for t in taxi_list
        for m in month_list
        if not wants_all or in_window(t, m) or t.name in _named(taxis)
    ]
    if not pairs:
        raise UsageError(
            f"no released month in {months!r} for {taxis!r}; windows: "
            + ", ".join(f"{t.name} {t.window_text()}" for t in taxi_list)
        )
    return pairs


def _named(taxis: str) -> set[str]:
    return {p.strip().lower() for p in taxis.split(",")} & set(TAXIS)


def run(
    cfg: Settings,
    taxis: str,
    months: str | None,
    *,
    fmt: str = "csv",
    force: bool = False,
    out: Output | None = None,
) -> list[Extracted]:
    """The `extract` command: every (taxi, month) of the specs, or the zones."""
    if fmt not in ("csv", "parquet"):
        raise UsageError(f"--format must be csv or parquet, not {fmt!r}")
    if taxis.strip().lower() == "zones":
        if months:
            raise UsageError("`extract zones` takes no months")
        return [ensure_zones(cfg, force=force, out=out)]
    pairs = plan(taxis, months)
    entries = load_manifest(cfg)
    sizes = [entries.get(t.file_name(m)) for t, m in pairs]
    total = sum(e.size for e in sizes if e) if all(sizes) else None
    results = []
    with _client(cfg, None) as http, _bars_for(out, total, len(pairs)) as bars:
        for taxi, month in pairs:
            results.append(
                ensure_file(
                    cfg,
                    taxi,
                    month,
                    force=force,
                    parquet=fmt == "parquet",
                    _bars=bars,
                    _http=http,
                )
            )
    return results


def report(results: list[Extracted], out: Output) -> None:
    """Print one line per file (or JSON with --json) on stdout."""
    if out.json:
        out.emit_json([r.as_json() for r in results])
        return
    for r in results:
        how = "cached" if r.cached else "downloaded"
        line = (
            f"{r.path}  {r.compressed_bytes:,} bytes  "
            f"{r.uncompressed_bytes:,} bytes uncompressed ({r.uncompressed_bytes / MIB:.1f} MiB)  "
            f"{r.rows:,} rows  {how}"
        )
        if r.parquet_path:
            line += f"  parquet {r.parquet_path}"
        out.stdout.write(line + "\n")
    out.stdout.flush()
