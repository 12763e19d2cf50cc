"""The verified-file sidecar is keyed by content: trusted only when complete, of this
version, for this file and made from the manifest's sha256; an incomplete, other-version,
unreadable or lying sidecar means "verify again" (the rows printed are the file's, not
the sidecar's), never a KeyError.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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
