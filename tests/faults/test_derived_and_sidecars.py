"""Derived files and sidecars are keyed by content: reused only when made from the same
sha256; an incomplete, other-version, unreadable or lying sidecar means "verify again"
(the rows printed are the file's, not the sidecar's), never a KeyError.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from taxi_cli import derived
from tests.faults.helpers import cli, final_path
from tests.fixtures_mirror import Mirror

pytestmark = pytest.mark.integration

MONTH = ("green", "2020-04")
ROWS = 700


def _sidecar() -> Path:
    final = final_path(*MONTH)
    return final.with_name(final.name + ".verified.json")


def _extract_rows() -> int:
    result = cli("extract", *MONTH, "--json")
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr
    (entry,) = json.loads(result.stdout)["partitions"]
    assert entry["cached"] is True
    rows: int = entry["rows"]
    return rows


def _edit(change: Callable[[dict[str, Any]], object]) -> None:
    meta = json.loads(_sidecar().read_text())
    change(meta)
    _sidecar().write_text(json.dumps(meta))


def _lie(**changes: object) -> Callable[[], None]:
    """Make the sidecar claim 999,999 rows, with `changes` that must make it untrusted."""
    return lambda: _edit(lambda m: m.update(rows=999_999, **changes))


def _write(data: bytes) -> Callable[[], None]:
    def write() -> None:
        _sidecar().write_bytes(data)

    return write


CASES: dict[str, Callable[[], None]] = {
    "missing a field": lambda: _edit(lambda m: m.pop("rows")),
    "a field of the wrong type": lambda: _edit(lambda m: m.update(rows="many")),
    "another version": _lie(version=99),
    "another file's": _lie(file="x.csv.gz"),
    "made from another sha256": _lie(sha256="0" * 64),
    "truncated JSON": lambda: _edit_text(lambda text: text[:40]),
    "not UTF-8": _write(b"\xff\xfe{"),
    "not an object": _write(b"[1, 2, 3]"),
}


def _edit_text(change: Callable[[str], str]) -> None:
    _sidecar().write_text(change(_sidecar().read_text()))


@pytest.mark.parametrize("damage", sorted(CASES))
def test_a_bad_sidecar_means_verify_again(mirror: Mirror, damage: str) -> None:
    mirror.add_month(*MONTH, rows=ROWS)
    assert cli("extract", *MONTH).exit_code == 0
    CASES[damage]()
    assert _extract_rows() == ROWS  # verified again: the file's count, not the sidecar's
    meta = json.loads(_sidecar().read_text())  # and recorded again, complete
    assert meta["rows"] == ROWS and meta["version"] == 1
    assert len(mirror.gets()) == 1  # the file itself was fine: no download


def test_an_unreadable_sidecar_means_verify_again(mirror: Mirror) -> None:
    mirror.add_month(*MONTH, rows=ROWS)
    assert cli("extract", *MONTH).exit_code == 0
    _sidecar().unlink()
    _sidecar().mkdir()  # reading it fails with EISDIR; so does replacing it
    assert _extract_rows() == ROWS
    assert _sidecar().is_dir()


# ---- the record beside derived files (Parquet and the like) -------------------------------

SHA = "ab" * 32


def _made(tmp_path: Path) -> Path:
    out = tmp_path / "green_tripdata_2020-04.parquet"
    out.write_bytes(b"PAR1 derived bytes PAR1")
    derived.record(out, SHA)
    return out


def test_a_derived_file_is_reused_only_for_the_same_source(tmp_path: Path) -> None:
    out = _made(tmp_path)
    assert derived.made_from(out, SHA)
    assert not derived.made_from(out, "cd" * 32)


@pytest.mark.parametrize(
    "damage",
    [
        "no record",
        "truncated record",
        "another version",
        "derived file changed",
        "record is a directory",
        "derived file gone",
        "size not a number",
    ],
)
def test_anything_doubtful_means_make_it_again(tmp_path: Path, damage: str) -> None:
    out = _made(tmp_path)
    rec = derived.record_path(out)
    meta = json.loads(rec.read_text())
    if damage == "no record":
        derived.forget(out)
    elif damage == "truncated record":
        rec.write_text(rec.read_text()[:20])
    elif damage == "another version":
        rec.write_text(json.dumps({**meta, "version": 2}))
    elif damage == "derived file changed":
        out.write_bytes(b"PAR1 other, longer derived bytes PAR1")
    elif damage == "record is a directory":
        rec.unlink()
        rec.mkdir()
    elif damage == "derived file gone":
        out.unlink()
    elif damage == "size not a number":
        rec.write_text(json.dumps({**meta, "size": str(meta["size"])}))
    assert derived.made_from(out, SHA) is False


def test_a_newer_parquet_made_from_other_content_is_rebuilt(mirror: Mirror) -> None:

    import polars as pl

    mirror.add_month(*MONTH, rows=300)
    assert cli("extract", *MONTH, "--format", "parquet").exit_code == 0
    final = final_path(*MONTH)
    parquet = final.with_name("green_tripdata_2020-04.parquet")
    old = {p: p.read_bytes() for p in (parquet, derived.record_path(parquet))}
    mirror.add_month(*MONTH, rows=500, seed=3)  # the release file is re-published
    assert cli("extract", *MONTH, "--force").exit_code == 0
    for p, data in old.items():  # an old Parquet and its record come back, newer than all
        p.write_bytes(data)
    assert parquet.stat().st_mtime_ns >= final.stat().st_mtime_ns
    assert pl.read_parquet(parquet).height == 300
    result = cli("extract", *MONTH, "--format", "parquet")
    assert result.exit_code == 0, result.stderr
    assert pl.read_parquet(parquet).height == 500  # rebuilt from the file as it is now
    assert derived.made_from(parquet, json.loads(_sidecar().read_text())["sha256"])
