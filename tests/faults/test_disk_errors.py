"""Full, read-only and unwritable disks, missing paths, a directory where a file should
be: one line naming the path and what to do, exit 1 (2 for a configured path), never a
traceback; a `.part` is kept only when the next run can resume it.

The disk is a real tmpfs when the suite runs as root (tests/faults/fixtures_disk.py);
the CLI runs as a subprocess of `.venv/bin/taxi-cli`, as a user would run it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.faults.fixtures_disk import Disk, small_disk
from tests.faults.helpers import (
    AS_UNPRIVILEGED,
    cli,
    error_line,
    files_in,
    final_path,
    one_error_line,
    part_path,
    run_cli,
)
from tests.fixtures_mirror import Mirror, rel_path

pytestmark = pytest.mark.integration

MONTH = ("green", "2020-04")
PATH = rel_path(*MONTH)


@pytest.fixture
def on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    """The data dir on a 64 KiB disk (smaller than the months the tests download)."""
    with small_disk(tmp_path / "disk") as disk:
        monkeypatch.setenv("TAXI_DATA_DIR", str(disk.path))
        yield disk


def test_full_disk_keeps_a_resumable_part_and_the_next_run_resumes(
    mirror: Mirror, on_disk: Disk
) -> None:
    src = mirror.add_month(*MONTH, rows=4000)  # ~127 KB: more than the 64 KiB disk
    done = run_cli("extract", *MONTH, preexec=on_disk.preexec)
    assert done.returncode == 1, done.stderr
    line = one_error_line(done)
    part = part_path(*MONTH)
    assert str(part) in line and on_disk.full_error in line
    assert "the next run resumes" in line
    kept = part.stat().st_size
    assert 0 < kept < src.stat().st_size
    assert src.read_bytes().startswith(part.read_bytes())  # a true prefix, nothing torn
    on_disk.resize(1 << 20)
    again = run_cli("extract", *MONTH, preexec=on_disk.preexec)
    assert again.returncode == 0, again.stderr
    assert mirror.gets(PATH)[-1].range == f"bytes={kept}-"
    assert final_path(*MONTH).read_bytes() == src.read_bytes()


def test_full_disk_drops_a_part_that_cannot_be_resumed(mirror: Mirror, on_disk: Disk) -> None:
    mirror.add_month(*MONTH, rows=4000)

    def no_validator(h: BaseHTTPRequestHandler, data: bytes, offset: int) -> int:
        h.send_response(200)  # no ETag, no Last-Modified: a Range could splice two files
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            h.wfile.write(data)
        return len(data)

    mirror.hijack(PATH, no_validator)
    done = run_cli("extract", *MONTH, preexec=on_disk.preexec)
    assert done.returncode == 1, done.stderr
    line = one_error_line(done)
    assert on_disk.full_error in line and "the partial file was removed" in line
    assert files_in(final_path(*MONTH).parent) == []


def test_read_only_data_dir_serves_its_verified_cache(mirror: Mirror, on_disk: Disk) -> None:
    on_disk.resize(1 << 20)
    mirror.add_month(*MONTH, rows=4000)
    mirror.add_month("green", "2020-05", rows=4000)
    assert run_cli("extract", "green", "2020-04..2020-05").returncode == 0
    # one sidecar gone: that month must be verified again, with nowhere to record it
    sidecar = final_path("green", "2020-05").with_name(
        "green_tripdata_2020-05.csv.gz.verified.json"
    )
    sidecar.unlink()
    before = {p: p.read_bytes() for p in on_disk.path.rglob("*") if p.is_file()}
    on_disk.read_only()
    mirror.clear_log()
    done = run_cli("extract", "green", "2020-04..2020-05", "--json")
    assert done.returncode == 0, done.stderr
    assert '"cached": true' in done.stdout and done.stdout.count('"rows": 4000') == 2
    assert mirror.gets() == []  # nothing was downloaded
    after = {p: p.read_bytes() for p in on_disk.path.rglob("*") if p.is_file()}
    assert after == before
    # a month that is not cached needs a writable dir: one line, the setting to change
    missing = run_cli("extract", "green", "2020-06")
    assert missing.returncode == 2, missing.stderr
    line = one_error_line(missing)
    assert str(on_disk.path) in line and "--data-dir / TAXI_DATA_DIR" in line
    assert ("read-only" if on_disk.tmpfs else "permission denied") in line


def test_unwritable_data_dir_is_one_line_exit_2(
    mirror: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror.add_month(*MONTH, rows=300)
    data = tmp_path / "data"
    data.mkdir(mode=0o555)
    data.chmod(0o555)
    monkeypatch.setenv("TAXI_DATA_DIR", str(data))
    done = run_cli("extract", *MONTH, prefix=AS_UNPRIVILEGED)
    data.chmod(0o755)
    assert done.returncode == 2, done.stderr
    line = one_error_line(done)
    assert f"{data}: permission denied; fix its owner or mode" in line


def test_unwritable_month_folder_is_one_line_exit_1(
    mirror: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror.add_month(*MONTH, rows=300)
    data = tmp_path / "data"
    (data / "green").mkdir(parents=True)
    (data / "green").chmod(0o555)
    monkeypatch.setenv("TAXI_DATA_DIR", str(data))
    done = run_cli("extract", *MONTH, prefix=AS_UNPRIVILEGED)
    (data / "green").chmod(0o755)
    assert done.returncode == 1, done.stderr
    line = one_error_line(done)
    assert "green_tripdata_2020-04.csv.gz.part" in line and "permission denied" in line
    assert files_in(data / "green") == []


def test_data_dir_that_is_a_file_is_exit_2(
    mirror: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror.add_month(*MONTH, rows=300)
    not_a_dir = tmp_path / "downloads"
    not_a_dir.write_text("oops")
    monkeypatch.setenv("TAXI_DATA_DIR", str(not_a_dir))
    result = cli("extract", *MONTH)
    assert result.exit_code == 2
    line = error_line(result)
    assert f"{not_a_dir}: a file is where a directory should be" in line
    assert "--data-dir / TAXI_DATA_DIR" in line
    assert not_a_dir.read_text() == "oops"


def test_directory_where_the_cached_file_should_be_is_exit_1(mirror: Mirror) -> None:
    mirror.add_month(*MONTH, rows=300)
    final_path(*MONTH).mkdir(parents=True)
    result = cli("extract", *MONTH)
    assert result.exit_code == 1
    line = error_line(result)
    assert f"{final_path(*MONTH)}: a directory is where a file should be" in line
    assert "remove that directory" in line
    assert final_path(*MONTH).is_dir()  # nothing of the user's removed behind their back


def test_directory_where_the_part_should_be_is_exit_1(mirror: Mirror) -> None:
    mirror.add_month(*MONTH, rows=300)
    part_path(*MONTH).mkdir(parents=True)
    result = cli("extract", *MONTH)
    assert result.exit_code == 1
    line = error_line(result)
    assert f"{part_path(*MONTH)}: a directory is where a file should be" in line
    assert not final_path(*MONTH).exists()


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_manifest_path_problems_are_exit_2(
    mirror: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    mirror.add_month(*MONTH, rows=300)
    path = tmp_path / "no-such-dir" / "manifest.csv"
    if kind == "directory":
        path.mkdir(parents=True)
    monkeypatch.setenv("TAXI_MANIFEST", str(path))
    result = cli("extract", *MONTH)
    assert result.exit_code == 2
    line = error_line(result)
    assert str(path) in line and "TAXI_MANIFEST" in line


@pytest.mark.parametrize("size", [160_000, 200_000])  # the disk fills at different writes
def test_full_disk_while_converting_to_parquet_is_one_line(
    mirror: Mirror, on_disk: Disk, size: int
) -> None:
    # room for the .csv.gz (~127 KB) but not for the Parquet beside it; without a tmpfs the
    # limit is per file, so it sits between the two files' sizes
    on_disk.resize(size if on_disk.tmpfs else 140_000)
    mirror.add_month(*MONTH, rows=4000)
    done = run_cli("extract", *MONTH, "--format", "parquet", preexec=on_disk.preexec)
    assert done.returncode == 1, done.stderr
    line = one_error_line(done)
    parquet = final_path(*MONTH).with_name("green_tripdata_2020-04.parquet")
    # taxi_cli.parquet names the file; Polars' text does not always keep the errno
    assert "green_tripdata_2020-04" in line and "parquet" in line.lower(), line
    left = files_in(parquet.parent)
    assert left == ["green_tripdata_2020-04.csv.gz", "green_tripdata_2020-04.csv.gz.verified.json"]
    again = run_cli("extract", *MONTH, preexec=on_disk.preexec)
    assert again.returncode == 0 and "cached" in again.stdout
