"""`taxi-cli extract` end to end against the local release mirror (tests/fixtures_mirror.py).

Each fault asserts the exit code, the one error line on stderr, and that nothing is left
under the final name (nor a `.part` that the next run would resume from).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner, Result

from taxi_cli import synthetic
from taxi_cli.catalog import GREEN, manifest
from taxi_cli.cli import app
from taxi_cli.parquet import LINEAGE
from tests.fixtures_mirror import REAL, ZONES_PATH, Mirror, rel_path

pytestmark = pytest.mark.integration

runner = CliRunner()
GREEN_04 = REAL / "green_tripdata_2020-04.csv.gz"
GREEN_10 = REAL / "green_tripdata_2020-10.csv.gz"
KEYS = {"taxi", "month", "path", "rows", "compressed_bytes", "uncompressed_bytes", "cached"}


def extract(*args: str) -> Result:
    return runner.invoke(app, ["extract", *args])


def data_dir() -> Path:
    return Path(os.environ["TAXI_DATA_DIR"])


def final_path(taxi: str, month: str) -> Path:
    return data_dir() / taxi / f"{taxi}_tripdata_{month}.csv.gz"


def error_line(result: Result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("taxi-cli: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def assert_nothing_kept(taxi: str, month: str) -> None:
    folder = data_dir() / taxi
    left = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert left == [], left


def flat(text: str) -> str:
    """Log text with rich's line wrapping undone."""
    return " ".join(text.split())


def as_json(result: Result) -> list[dict[str, object]]:
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    partitions: list[dict[str, object]] = payload["partitions"]
    assert payload["failed"] == 0 and all(p["state"] == "done" for p in partitions)
    return partitions


# ---- the real release files ---------------------------------------------------------------


def test_real_green_months_download_verify_and_count(mirror: Mirror) -> None:
    mirror.add_file(GREEN_04)
    mirror.add_file(GREEN_10)
    rows = as_json(extract("green", "2020-04,2020-10", "--json"))
    assert [(r["month"], r["rows"], r["cached"]) for r in rows] == [
        ("2020-04", 35_612, False),
        ("2020-10", 95_120, False),
    ]
    assert set(rows[0]) >= KEYS
    assert rows[0]["compressed_bytes"] == 670_357
    assert rows[0]["uncompressed_bytes"] == 3_210_216
    assert rows[1]["uncompressed_bytes"] == 8_594_676
    assert rows[0]["sha256"] == manifest()["green_tripdata_2020-04.csv.gz"].sha256
    assert Path(str(rows[0]["path"])).read_bytes() == GREEN_04.read_bytes()


def test_cache_hit_downloads_nothing_and_force_downloads_again(mirror: Mirror) -> None:
    mirror.add_file(GREEN_04)
    path = rel_path("green", "2020-04")
    assert as_json(extract("green", "2020-04", "--json"))[0]["cached"] is False
    again = as_json(extract("green", "2020-04", "--json"))
    assert again[0]["cached"] is True and again[0]["rows"] == 35_612
    assert len(mirror.gets(path)) == 1
    forced = as_json(extract("green", "2020-04", "--force", "--json"))
    assert forced[0]["cached"] is False
    assert len(mirror.gets(path)) == 2


def test_text_report_names_path_sizes_rows_and_cache(mirror: Mirror) -> None:
    mirror.add_file(GREEN_04)
    first = extract("green", "2020-04")
    assert first.exit_code == 0, first.stderr
    line = first.stdout.strip()
    assert str(final_path("green", "2020-04")) in line
    assert "670,357 bytes" in line and "3,210,216 bytes uncompressed (3.1 MiB)" in line
    assert "35,612 rows" in line and "downloaded in " in line
    assert extract("green", "2020-04").stdout.strip().endswith("cached")


def test_stale_sidecar_means_reverify_without_download(mirror: Mirror) -> None:
    mirror.add_month("green", "2020-05", rows=800)
    as_json(extract("green", "2020-05", "--json"))
    final = final_path("green", "2020-05")
    os.utime(final, ns=(1, 1))  # the sidecar no longer matches: verify the file again
    again = as_json(extract("green", "2020-05", "--json"))
    assert again[0]["cached"] is True and again[0]["rows"] == 800
    assert len(mirror.gets(rel_path("green", "2020-05"))) == 1


def test_corrupted_cached_file_is_downloaded_again(mirror: Mirror) -> None:
    mirror.add_month("green", "2020-05", rows=800)
    as_json(extract("green", "2020-05", "--json"))
    final = final_path("green", "2020-05")
    final.write_bytes(final.read_bytes()[:-100])
    again = as_json(extract("green", "2020-05", "--json"))
    assert again[0]["cached"] is False and again[0]["rows"] == 800
    assert len(mirror.gets(rel_path("green", "2020-05"))) == 2


# ---- network faults -----------------------------------------------------------------------


def test_dropped_connection_is_resumed_with_a_range_request(mirror: Mirror) -> None:
    src = mirror.add_month("green", "2020-04", rows=4000)
    path = rel_path("green", "2020-04")
    mirror.drop_after(path, 5000)
    rows = as_json(extract("green", "2020-04", "--json"))
    assert rows[0]["rows"] == 4000 and rows[0]["cached"] is False
    gets = mirror.gets(path)
    assert [(g.status, g.range, g.sent) for g in gets] == [
        (200, None, 5000),
        (206, "bytes=5000-", src.stat().st_size - 5000),
    ]
    assert gets[1].if_range is not None  # the validator guards against a changed asset
    assert final_path("green", "2020-04").read_bytes() == src.read_bytes()


def test_5xx_is_retried_then_succeeds(mirror: Mirror) -> None:
    mirror.add_month("green", "2020-04", rows=300)
    path = rel_path("green", "2020-04")
    mirror.fail(path, [500, 503])
    rows = as_json(extract("green", "2020-04", "--json"))
    assert rows[0]["rows"] == 300
    assert [g.status for g in mirror.gets(path)] == [500, 503, 200]


def test_retries_are_bounded(mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAXI_HTTP_RETRIES", "2")
    mirror.add_month("green", "2020-04", rows=300)
    path = rel_path("green", "2020-04")
    mirror.fail(path, [502] * 10)
    result = extract("green", "2020-04")
    assert result.exit_code == 1
    line = error_line(result)
    assert "failed after 3 attempts: HTTP 502" in line and mirror.url + path in line
    assert len(mirror.gets(path)) == 3
    assert not final_path("green", "2020-04").exists()


def test_server_ignoring_range_restarts_the_file(mirror: Mirror) -> None:
    src = mirror.add_month("green", "2020-04", rows=2000)
    path = rel_path("green", "2020-04")
    mirror.ignore_range(path)
    part = final_path("green", "2020-04").with_name("green_tripdata_2020-04.csv.gz.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"junk from an interrupted run")  # the server will not resume it
    rows = as_json(extract("green", "2020-04", "--json"))
    assert rows[0]["rows"] == 2000
    (get,) = mirror.gets(path)
    assert get.range == f"bytes={len(b'junk from an interrupted run')}-" and get.status == 200
    assert final_path("green", "2020-04").read_bytes() == src.read_bytes()
    assert not part.exists()


def test_partial_file_from_an_interrupted_run_is_resumed(mirror: Mirror) -> None:
    src = mirror.add_month("green", "2020-04", rows=2000)
    part = final_path("green", "2020-04").with_name("green_tripdata_2020-04.csv.gz.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(src.read_bytes()[:3000])
    as_json(extract("green", "2020-04", "--json"))
    (get,) = mirror.gets(rel_path("green", "2020-04"))
    assert (get.status, get.range) == (206, "bytes=3000-")
    assert final_path("green", "2020-04").read_bytes() == src.read_bytes()


def test_flaky_mirror_still_delivers_every_month(mirror: Mirror) -> None:
    months = [f"2020-0{m}" for m in range(1, 7)]
    mirror.add_months("green", months, rows=3000)
    mirror.flaky(rate=0.6, seed=7, max_faults=3)
    rows = as_json(extract("green", "2020-01..2020-06", "--json"))
    assert [r["rows"] for r in rows] == [3000] * 6
    assert any(r.status >= 500 or r.range for r in mirror.log)  # faults did happen


def test_404_names_the_url_and_the_release_window(mirror: Mirror) -> None:
    result = extract("green", "2025-01")
    assert result.exit_code == 1
    line = error_line(result)
    assert mirror.url + rel_path("green", "2025-01") in line
    assert "available: 2019-01..2021-07" in line
    assert_nothing_kept("green", "2025-01")


# ---- bad content --------------------------------------------------------------------------


def test_truncated_gzip_fails_twice_and_keeps_nothing(mirror: Mirror) -> None:
    mirror.add_file(REAL / "oluwasina_green_head.csv", "green/green_tripdata_2019-10.csv.gz")
    result = extract("green", "2019-10")
    assert result.exit_code == 1
    line = error_line(result)
    assert "green_tripdata_2019-10.csv.gz: line 1310: the gzip stream ends early" in line
    assert "downloaded twice" in line
    assert len(mirror.gets(rel_path("green", "2019-10"))) == 2
    assert_nothing_kept("green", "2019-10")


def test_html_body_with_200_is_rejected(mirror: Mirror) -> None:
    mirror.add_month("green", "2020-04", rows=300)
    path = rel_path("green", "2020-04")
    mirror.serve_html(path)
    result = extract("green", "2020-04")
    assert result.exit_code == 1
    assert "not a gzip file: an HTML page" in error_line(result)
    assert len(mirror.gets(path)) == 2
    assert_nothing_kept("green", "2020-04")


def test_one_bad_copy_is_replaced_by_a_second_download(mirror: Mirror) -> None:
    mirror.add_month("green", "2020-04", rows=300)
    path = rel_path("green", "2020-04")
    mirror.serve_html(path, times=1)
    result = extract("green", "2020-04", "--json")
    assert as_json(result)[0]["rows"] == 300
    assert "downloading it once more from scratch" in flat(result.stderr)
    assert len(mirror.gets(path)) == 2


def test_header_of_another_taxi_type_is_named(mirror: Mirror, tmp_path: Path) -> None:
    yellow = tmp_path / "yellow.csv.gz"
    synthetic.write_month(yellow, "yellow", "2020-04", 200)
    mirror.add_file(yellow, "green/green_tripdata_2020-04.csv.gz")
    result = extract("green", "2020-04")
    assert result.exit_code == 1
    line = error_line(result)
    assert "green_tripdata_2020-04.csv.gz: line 1: header is yellow's, expected green's" in line
    assert_nothing_kept("green", "2020-04")


def test_short_record_mid_file_names_its_line(mirror: Mirror) -> None:
    lines = synthetic.csv_bytes("green", "2020-04", 500).split(b"\r\n")
    lines[99] = lines[99].rsplit(b",", 3)[0]  # line 100 loses its last 3 fields
    mirror.add_bytes(rel_path("green", "2020-04"), gzip.compress(b"\r\n".join(lines)))
    result = extract("green", "2020-04")
    assert result.exit_code == 1
    line = error_line(result)
    assert "green_tripdata_2020-04.csv.gz: line 100: 17 fields, expected 20" in line
    assert_nothing_kept("green", "2020-04")


def test_manifest_size_mismatch_is_rejected(mirror: Mirror) -> None:
    # a synthetic green 2020-04 against the shipped manifest entry of the real one
    mirror.add_month("green", "2020-04", rows=300, manifest=False)
    result = extract("green", "2020-04")
    assert result.exit_code == 1
    line = error_line(result)
    assert "the release manifest says 670,357" in line
    assert_nothing_kept("green", "2020-04")


def test_manifest_sha256_mismatch_same_size_is_rejected(mirror: Mirror) -> None:
    src = mirror.add_month("green", "2020-04", rows=300)
    mirror.set_manifest(src.name, src.stat().st_size, "ab" * 32)
    result = extract("green", "2020-04")
    assert result.exit_code == 1
    line = error_line(result)
    assert "differs from the release manifest's abababababab" in line
    assert "same size, different content" in line
    assert_nothing_kept("green", "2020-04")


def test_reuploaded_asset_differing_only_in_gzip_mtime_is_accepted(
    mirror: Mirror, tmp_path: Path
) -> None:
    data = bytearray(GREEN_04.read_bytes())
    data[4:8] = (1643030000).to_bytes(4, "little")  # hanisaf's January 2022 copy
    older = tmp_path / GREEN_04.name
    older.write_bytes(bytes(data))
    mirror.add_file(older, manifest=False)  # the shipped manifest entry applies
    result = extract("green", "2020-04", "--json")
    rows = as_json(result)
    assert rows[0]["rows"] == 35_612
    note = "differs from the release manifest only in the gzip timestamp"
    assert note in flat(result.stderr) and "WARNING" in result.stderr
    assert note in str(rows[0]["note"])
    assert "content verified" in str(rows[0]["note"])
    cached = as_json(extract("green", "2020-04", "--json"))
    assert cached[0]["cached"] is True and note in str(cached[0]["note"])


def test_manifest_none_skips_the_check(mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror.add_month("green", "2020-04", rows=300, manifest=False)
    monkeypatch.setenv("TAXI_MANIFEST", "none")
    assert as_json(extract("green", "2020-04", "--json"))[0]["rows"] == 300


# ---- zones, parquet, usage ----------------------------------------------------------------


def test_extract_zones(mirror: Mirror) -> None:
    mirror.add_zones()
    rows = as_json(extract("zones", "--json"))
    assert [(r["taxi"], r["month"], r["rows"], r["compressed_bytes"]) for r in rows] == [
        ("zones", None, 265, 12_322)
    ]
    path = Path(str(rows[0]["path"]))
    assert path == data_dir() / "misc" / "taxi_zone_lookup.csv"
    assert path.read_bytes().startswith(b'"LocationID","Borough","Zone","service_zone"\r\n')
    assert as_json(extract("zones", "--json"))[0]["cached"] is True
    assert len(mirror.gets(ZONES_PATH)) == 1


def test_zones_truncated_is_rejected(mirror: Mirror) -> None:
    from tests.fixtures_mirror import SHARED_DATA

    text = (SHARED_DATA / "taxi_zone_lookup.csv").read_bytes()
    mirror.add_bytes(ZONES_PATH, text[: len(text) // 2])
    result = extract("zones")
    assert result.exit_code == 1
    assert "taxi_zone_lookup.csv" in error_line(result)
    assert not (data_dir() / "misc" / "taxi_zone_lookup.csv").exists()


def test_format_parquet_writes_typed_columns(mirror: Mirror) -> None:
    mirror.add_file(GREEN_04)
    rows = as_json(extract("green", "2020-04", "--format", "parquet", "--json"))
    parquet = Path(str(rows[0]["parquet_path"]))
    assert parquet == data_dir() / "green" / "green_tripdata_2020-04.parquet"
    df = pl.read_parquet(parquet)
    assert df.height == 35_612
    assert df.columns == [*LINEAGE, *GREEN.header]
    assert df.schema["VendorID"] == pl.Int64
    assert df.schema["passenger_count"] == pl.Int64
    assert df.schema["lpep_pickup_datetime"] == pl.Datetime("us")
    assert df.schema["trip_distance"] == pl.Float64
    assert df.schema["store_and_fwd_flag"] == pl.String
    assert df["VendorID"].null_count() == 11_110  # the empty-VendorID tail block
    assert df["ehail_fee"].null_count() == 35_612
    assert df["total_amount"].min() == pytest.approx(-60.3)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["green", "2020-13"], "accepted forms: 2020-04, 2020-01..2020-06, 2020"),
        (["green", "2020-06..2020-01"], "runs backwards"),
        (["purple", "2020-04"], "accepted: yellow, green, fhv, fhvhv"),
        (["green"], "which months?"),
        (["zones", "2020-04"], "takes no months"),
    ],
)
def test_bad_arguments_exit_2_with_the_accepted_forms(
    mirror: Mirror, args: list[str], needle: str
) -> None:
    result = extract(*args)
    assert result.exit_code == 2
    assert needle in error_line(result)
    assert mirror.log == []


def test_concurrent_extracts_of_one_file_download_it_once(mirror: Mirror) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from taxi_cli.config import load_settings
    from taxi_cli.extract import ensure_file

    mirror.add_month("green", "2020-04", rows=20_000)
    cfg = load_settings()
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: ensure_file(cfg, GREEN, "2020-04"), range(3)))
    assert sorted(r.cached for r in results) == [False, True, True]
    assert {r.rows for r in results} == {20_000}
    assert len(mirror.gets(rel_path("green", "2020-04"))) == 1


def test_stalled_connection_times_out_and_resumes(
    mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAXI_HTTP_TIMEOUT", "0.3")
    src = mirror.add_month("green", "2020-04", rows=3000)
    path = rel_path("green", "2020-04")
    mirror.stall(path, 4000, seconds=1.5)
    rows = as_json(extract("green", "2020-04", "--json"))
    assert rows[0]["rows"] == 3000
    assert [(g.range, g.sent) for g in mirror.gets(path)] == [
        (None, 4000),
        ("bytes=4000-", src.stat().st_size - 4000),
    ]


def test_unreachable_host_exits_3_after_a_short_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("TAXI_SOURCE_URL", f"http://127.0.0.1:{port}/releases")
    monkeypatch.setenv("TAXI_HTTP_BACKOFF", "0.01")
    result = extract("green", "2020-04")
    assert result.exit_code == 3
    line = error_line(result)
    assert f"cannot connect to 127.0.0.1:{port} (ConnectError" in line
    assert "TAXI_SOURCE_URL" in line
    assert result.stderr.count("retrying") == 2  # CONNECT_RETRIES, not TAXI_HTTP_RETRIES
    assert_nothing_kept("green", "2020-04")


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_bars_on_a_terminal_only_without_quiet(mirror: Mirror, quiet: bool) -> None:
    import io

    from rich.console import Console

    from taxi_cli.catalog import select
    from taxi_cli.config import load_settings
    from taxi_cli.console import Output
    from taxi_cli.load import extract_files

    mirror.add_months("green", ["2020-01", "2020-02"], rows=2000)
    err = io.StringIO()
    out = Output(
        quiet=quiet, err=Console(file=err, force_terminal=True, width=150), stdout=io.StringIO()
    )
    results = extract_files(load_settings(), select("green", "2020-01..2020-02"), out)
    assert [r.extracted.rows for r in results if r.extracted] == [2000, 2000]
    shown = err.getvalue()
    if quiet:
        assert shown == ""
    else:
        assert "green_tripdata_2020-01.csv.gz" in shown and "all 2 files" in shown


def test_all_skips_months_outside_each_release_window(mirror: Mirror) -> None:
    for taxi in ("yellow", "green", "fhv"):
        mirror.add_month(taxi, "2019-05", rows=50)
    rows = as_json(extract("all", "2019-05", "--json"))
    assert [(r["taxi"], r["rows"]) for r in rows] == [("yellow", 50), ("green", 50), ("fhv", 50)]
    assert not any("fhvhv" in r.path for r in mirror.log)  # fhvhv starts in 2021


def test_a_bad_format_is_refused_by_the_option_parser(mirror: Mirror) -> None:
    result = extract("green", "2020-04", "--format", "xlsx")
    assert result.exit_code == 2
    assert "Invalid value for '--format'" in result.stderr and "'csv', 'parquet'" in result.stderr
    assert mirror.log == []


def test_a_named_type_is_tried_outside_its_window(mirror: Mirror) -> None:
    result = extract("fhv", "2020-01")
    assert result.exit_code == 1
    assert "fhv releases available: 2019-01..2019-12" in error_line(result)
    assert [r.path for r in mirror.gets()] == [rel_path("fhv", "2020-01")]


def test_a_changed_asset_is_not_spliced_onto_an_old_partial(
    mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAXI_HTTP_RETRIES", "0")
    mirror.add_month("green", "2020-04", rows=3000, seed=1)
    path = rel_path("green", "2020-04")
    mirror.drop_after(path, 6000)
    first = extract("green", "2020-04")
    assert first.exit_code == 1
    assert "run again (it resumes)" in error_line(first)
    part = final_path("green", "2020-04").with_name("green_tripdata_2020-04.csv.gz.part")
    assert part.stat().st_size == 6000  # kept for the next run
    new = mirror.add_month("green", "2020-04", rows=3100, seed=2)  # re-published meanwhile
    rows = as_json(extract("green", "2020-04", "--json"))
    assert rows[0]["rows"] == 3100
    last = mirror.gets(path)[-1]
    assert (last.range, last.status) == ("bytes=6000-", 200)  # If-Range said: start over
    assert final_path("green", "2020-04").read_bytes() == new.read_bytes()


def test_mirror_fixture_speaks_http_ranges(mirror: Mirror) -> None:
    import httpx

    src = mirror.add_month("green", "2020-04", rows=100)
    url = mirror.url + rel_path("green", "2020-04")
    size = src.stat().st_size
    with httpx.Client() as http:
        head = http.head(url)
        assert (head.status_code, head.headers["content-length"]) == (200, str(size))
        etag = head.headers["etag"]
        part = http.get(url, headers={"Range": "bytes=10-19", "If-Range": etag})
        assert part.status_code == 206 and part.content == src.read_bytes()[10:20]
        assert part.headers["content-range"] == f"bytes 10-19/{size}"
        stale = http.get(url, headers={"Range": "bytes=10-", "If-Range": '"other"'})
        assert stale.status_code == 200 and len(stale.content) == size
        assert http.get(url, headers={"Range": f"bytes={size}-"}).status_code == 416
        assert http.get(url.replace("/releases/download", "")).status_code == 404
    assert [r.method for r in mirror.requests()] == ["HEAD", "GET", "GET", "GET", "GET"]


def test_sigterm_mid_download_keeps_the_part_and_the_rerun_resumes(mirror: Mirror) -> None:
    import signal
    import subprocess
    import sys
    import time

    src = mirror.add_month("green", "2020-04", rows=3000)
    path = rel_path("green", "2020-04")
    mirror.stall(path, 5000, seconds=30)
    part = final_path("green", "2020-04").with_name("green_tripdata_2020-04.csv.gz.part")
    cli = Path(sys.executable).with_name("taxi-cli")
    proc = subprocess.Popen([str(cli), "extract", "green", "2020-04"], stderr=subprocess.PIPE)
    for _ in range(600):  # until the first 5,000 bytes are on disk
        if part.exists() and part.stat().st_size == 5000:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.decode().strip().splitlines()[-1] == "taxi-cli: interrupted"
    assert part.stat().st_size == 5000 and not final_path("green", "2020-04").exists()
    rows = as_json(extract("green", "2020-04", "--json"))
    assert rows[0]["rows"] == 3000
    assert mirror.gets(path)[-1].range == "bytes=5000-"
    assert final_path("green", "2020-04").read_bytes() == src.read_bytes()
