"""Derived files keyed by content, not time: which release file a derived file came from.

A file made from a verified release file (a Parquet conversion, a plain CSV, ...) gets a
record beside it, `{derived}.source.json`: the sha256 of the release file it was made
from, and the derived file's own size and mtime when it was finished. A derived file is
reused only when `made_from(derived, sha256)` holds: the record is complete, of this
version, still describes the derived file as it is, and names the same source sha256.
Anything else (no record, unreadable, truncated, another version, another source, a
derived file changed since) means: make it again. Never an exception.

Write the derived file atomically first, then `record` it; `forget` before replacing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

RECORD_SUFFIX = ".source.json"
RECORD_VERSION = 1


def record_path(derived: Path) -> Path:
    return derived.with_name(derived.name + RECORD_SUFFIX)


def record(derived: Path, source_sha256: str) -> None:
    """Record that `derived` (already in place) was made from the file of that sha256."""
    st = derived.stat()
    meta = {
        "version": RECORD_VERSION,
        "derived": derived.name,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "source_sha256": source_sha256,
    }
    path = record_path(derived)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, path)


def made_from(derived: Path, source_sha256: str) -> bool:
    """True only when `derived` is, as it is now, what was made from that source."""
    try:
        meta = json.loads(record_path(derived).read_text())
        st = derived.stat()
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or meta.get("version") != RECORD_VERSION:
        return False
    return (
        meta.get("derived") == derived.name
        and meta.get("source_sha256") == source_sha256
        and _int(meta.get("size")) == st.st_size
        and _int(meta.get("mtime_ns")) == st.st_mtime_ns
    )


def forget(derived: Path) -> None:
    """Drop the record (before `derived` is replaced or removed)."""
    record_path(derived).unlink(missing_ok=True)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
