"""A first download is verified by the load pass itself (issue 14: one decompression).

load-pg hands a download the release manifest knows to the COPY pass unverified; the
pass hashes the compressed bytes as it inflates them, and its verdict comes inside the
load's transaction, before anything commits. These tests hold it to the extract
contract: a bad download loads nothing and is fetched once more, twice bad is an error
with the previous rows intact, a good file with a bad row is still cached, and a killed
run neither duplicates rows nor downloads a complete file again.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import signal
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import psycopg
import pytest

from taxi_cli import verify
from taxi_cli.config import load_settings
from taxi_cli.extract import sidecar_path
from taxi_cli.postgres.destination import ledger_rows
from tests.faults.db_support import cli as db_cli
from tests.faults.db_support import interrupt, start
from tests.faults.helpers import cli, data_dir, final_path, part_path
from tests.fixtures_mirror import Mirror, rel_path
from tests.pg_helpers import GREEN_04, count, lines_of, sha256, wait_for_copy, write_gz

pytestmark = pytest.mark.integration
G04 = "green_tripdata_2020-04.csv"
PATH_04 = rel_path("green", "2020-04")


def _final() -> Path:
    return final_path("green", "2020-04")


@pytest.fixture
def inflations(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The files the verifier inflates (it still runs; this only counts its calls)."""
    seen: list[str] = []
    real = verify._gunzip

    def counted(path: Path, hasher: Any) -> Iterator[bytes]:
        seen.append(path.name)
        yield from real(path, hasher)

    monkeypatch.setattr(verify, "_gunzip", counted)
    yield seen


def _other_os_byte(data: bytes) -> bytes:
    """The same file with another gzip OS byte: a valid gzip of the same size and
    content, but not the bytes the manifest names (nor an MTIME-only difference)."""
    return data[:9] + bytes([data[9] ^ 1]) + data[10:]


def _serving(
    bodies: Callable[[bytes], bytes],
) -> Callable[[BaseHTTPRequestHandler, bytes, int], int]:
    def respond(handler: BaseHTTPRequestHandler, data: bytes, offset: int) -> int:
        body = bodies(data)
        handler.send_response(200)
        handler.send_header("Content-Type", "application/gzip")
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("ETag", '"' + hashlib.sha256(body).hexdigest()[:16] + '"')
        handler.end_headers()
        handler.wfile.write(body)
        return len(body)

    return respond


def _ledger(pg_url: str) -> tuple[str | None, int | None, dict[str, Any]]:
    (row,) = [r for r in ledger_rows(load_settings({"pg_url": pg_url})) if r.file == G04]
    return row.sha256, row.rows, row.detail


def test_a_first_load_is_verified_by_its_own_pass(
    mirror: Mirror, pg_url: str, inflations: list[str]
) -> None:
    mirror.add_file(GREEN_04)
    result = cli("load-pg", "green", "2020-04", "--pg-url", pg_url, "--json")
    assert result.exit_code == 0, result.stderr
    (done,) = json.loads(result.stdout)["partitions"]
    assert (done["state"], done["rows"], done["verified"]) == ("done", 35_612, "load pass")
    assert inflations == []  # the verifier never inflated it: the COPY pass did, once
    # what the pass measured is what verification records: the file is cached as verified
    final = _final()
    assert final.is_file() and not final.with_name(final.name + ".part").exists()
    side = json.loads(sidecar_path(final).read_text())
    assert (side["sha256"], side["rows"], side["size"]) == (
        sha256(GREEN_04),
        35_612,
        GREEN_04.stat().st_size,
    )
    assert side["uncompressed_bytes"] == len(gzip.decompress(GREEN_04.read_bytes()))
    assert side["etag"]  # the asset's version, for drift
    sha, rows, reconciled = _ledger(pg_url)
    assert (sha, rows) == (sha256(GREEN_04), 35_612)
    assert reconciled["source_rows"] == 35_612
    assert reconciled["source_bytes"] == side["uncompressed_bytes"]
    assert reconciled["upstream"]["etag"] == side["etag"]
    # a reload from the cache needs no verification either: the sidecar vouches for it
    again = cli("load-pg", "green", "2020-04", "--pg-url", pg_url, "--force", "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["partitions"][0]["verified"] == "sidecar"
    assert inflations == [] and len(mirror.gets(PATH_04)) == 1


def test_a_bad_download_loads_nothing_and_is_fetched_once_more(mirror: Mirror, pg_url: str) -> None:
    mirror.add_file(GREEN_04)
    sent = [0]

    def first_bad(data: bytes) -> bytes:
        sent[0] += 1
        return _other_os_byte(data) if sent[0] == 1 else data

    mirror.hijack(PATH_04, _serving(first_bad))
    result = cli("load-pg", "green", "2020-04", "--pg-url", pg_url)
    assert result.exit_code == 0, result.stderr
    said = " ".join(result.stderr.split())
    assert "differs from the release manifest" in said and "once more from scratch" in said
    assert len(mirror.gets(PATH_04)) == 2
    with psycopg.connect(pg_url) as conn:  # one copy: the bad pass's rows rolled back
        assert count(conn, "green_tripdata") == 35_612
    assert _ledger(pg_url)[0] == sha256(GREEN_04)
    assert _final().read_bytes() == GREEN_04.read_bytes()


def test_a_copy_differing_only_in_the_gzip_timestamp_loads_with_its_note(
    mirror: Mirror, pg_url: str
) -> None:
    mirror.add_file(GREEN_04)  # the manifest names these bytes
    data = GREEN_04.read_bytes()
    mtime = int.from_bytes(data[4:8], "little")
    other = next(m for m in verify.MTIME_WINDOW if m != mtime)
    mirror.hijack(PATH_04, _serving(lambda d: d[:4] + other.to_bytes(4, "little") + d[8:]))
    result = cli("load-pg", "green", "2020-04", "--pg-url", pg_url)
    assert result.exit_code == 0, result.stderr
    assert "only in the gzip timestamp" in " ".join(result.stderr.split())
    assert len(mirror.gets(PATH_04)) == 1
    side = json.loads(sidecar_path(_final()).read_text())
    assert side["note"] and side["sha256"] != sha256(GREEN_04)
    assert _ledger(pg_url)[:2] == (side["sha256"], 35_612)


def test_twice_bad_is_an_error_and_the_previous_rows_stay(mirror: Mirror, pg_url: str) -> None:
    mirror.add_file(GREEN_04)
    assert cli("load-pg", "green", "2020-04", "--pg-url", pg_url).exit_code == 0
    shutil.rmtree(data_dir() / "green")  # the cache is gone: a reload downloads again
    mirror.hijack(PATH_04, _serving(_other_os_byte))
    mirror.clear_log()
    result = cli("load-pg", "green", "2020-04", "--pg-url", pg_url, "--force")
    assert result.exit_code == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "downloaded twice and both copies failed verification" in " ".join(
        result.stderr.split()
    ), last
    assert len(mirror.gets(PATH_04)) == 2
    with psycopg.connect(pg_url) as conn:
        assert count(conn, "green_tripdata") == 35_612
    assert _ledger(pg_url)[:2] == (sha256(GREEN_04), 35_612)
    assert sorted(p.name for p in (data_dir() / "green").iterdir()) == []  # nothing kept


def test_a_bad_row_in_a_good_download_keeps_the_verified_file(
    mirror: Mirror, pg_url: str, tmp_path: Path, inflations: list[str]
) -> None:
    lines = lines_of(GREEN_04)[:40]
    fields = lines[7].split(",")
    fields[9] = "1e309"  # fare_amount: overflows float8 in PostgreSQL
    lines[7] = ",".join(fields)
    bad = write_gz(tmp_path / f"{G04}.gz", lines)
    mirror.add_file(bad, PATH_04)
    result = cli("load-pg", "green", "2020-04", "--pg-url", pg_url)
    assert result.exit_code == 1
    assert "line 8" in result.stderr and "fare_amount" in result.stderr
    # the download itself is the published file: it is cached, verified on its own once
    assert _final().read_bytes() == bad.read_bytes()
    assert json.loads(sidecar_path(_final()).read_text())["rows"] == 39
    assert inflations == [f"{G04}.gz.part"]
    quarantined = cli("load-pg", "green", "2020-04", "--pg-url", pg_url, "--bad-rows", "quarantine")
    assert quarantined.exit_code == 0, quarantined.stderr
    assert len(mirror.gets(PATH_04)) == 1  # the second run took the cached file
    with psycopg.connect(pg_url) as conn:
        assert count(conn, "green_tripdata") == 38
    assert _ledger(pg_url)[2]["source_rows"] == 39


def test_a_file_the_manifest_does_not_know_is_verified_before_the_load(
    mirror: Mirror, pg_url: str, inflations: list[str]
) -> None:
    mirror.add_file(GREEN_04, manifest=False)
    mirror.drop_manifest(f"{G04}.gz")
    result = cli("load-pg", "green", "2020-04", "--pg-url", pg_url, "--json")
    assert result.exit_code == 0, result.stderr
    # no sha256 to hold the pass to: the record-by-record verification runs first
    assert inflations == [f"{G04}.gz.part"]
    assert json.loads(result.stdout)["partitions"][0]["verified"] == "before load"
    assert _ledger(pg_url)[:2] == (sha256(GREEN_04), 35_612)


@pytest.mark.slow
def test_sigkill_mid_first_load_leaves_no_rows_and_no_second_download(
    mirror: Mirror, pg_url: str, tmp_path: Path
) -> None:
    path = rel_path("yellow", "2021-01")
    mirror.add_month("yellow", "2021-01", rows=300_000, seed=3)
    args = ("load-pg", "yellow", "2021-01", "--pg-url", pg_url, "-q")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        proc = start(*args)
        in_flight = wait_for_copy(conn, proc)
        assert interrupt(proc, signal.SIGKILL).code == -signal.SIGKILL and in_flight > 0
        exists = conn.execute("SELECT to_regclass('yellow_tripdata')").fetchone()
        assert exists is None or exists[0] is None or count(conn, "yellow_tripdata") == 0
    part = part_path("yellow", "2021-01")
    assert part.is_file()  # complete, not yet verified: kept for the next run
    mirror.clear_log()
    done = db_cli(*args)
    assert done.code == 0, done.err
    assert mirror.gets(path) == []  # the complete download was verified, not fetched again
    with psycopg.connect(pg_url) as conn:
        assert count(conn, "yellow_tripdata") == 300_000
    assert not part.exists()
