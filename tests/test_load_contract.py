"""Every load command is the same partition loop behind one destination contract.

- a usage error exits 2 before any I/O: no data dir, no embedded server, no request;
- a failed month is recorded, the others load, and the run exits 4 naming it;
- a month outside the known window is tried when its taxi type is named;
- read-only commands create nothing to find out that nothing is there.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from taxi_cli.choices import TargetName
from taxi_cli.cli import app
from taxi_cli.config import load_settings
from taxi_cli.destinations import make
from tests.fixtures_gcp import Gcp
from tests.fixtures_mirror import Mirror

runner = CliRunner()

LOADS = ("extract", "load-pg", "load-gcs", "load-bq", "backfill")


def _created(home: Path) -> list[str]:
    """Everything a command left under the isolated home, the data dirs included."""
    return sorted(str(p.relative_to(home)) for p in home.rglob("*"))


@pytest.mark.parametrize("command", LOADS)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["green", "2020-13"], "bad month '2020-13'"),
        (["purple", "2020-01"], "unknown taxi type 'purple'"),
        (["green", "2020-06..2020-01"], "runs backwards"),
    ],
)
def test_a_usage_error_touches_nothing(
    command: str, args: list[str], message: str, mirror: Mirror, isolated_env: Path
) -> None:
    before = _created(isolated_env)
    result = runner.invoke(app, [command, *args])
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr
    assert _created(isolated_env) == before  # no data dir, no state dir, no pg data dir
    assert mirror.requests() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["load-gcs", "green", "2020-04", "--mode", "merge", "--bucket", "b"], "--mode merge"),
        (["load-bq", "green", "2020-04", "--mode", "merge", "--bucket", "b"], "--mode merge"),
        (["load-gcs", "green", "2020-04"], "no bucket"),
        (["load-pg", "zones", "2020-04"], "takes no months"),
        (["extract", "green"], "which months?"),
        (["load-pg", "green", "2020-04", "--schema", 'x"; drop'], "invalid schema name"),
    ],
)
def test_option_combinations_are_refused_before_any_io(
    args: list[str], message: str, mirror: Mirror, isolated_env: Path
) -> None:
    before = _created(isolated_env)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1
    assert _created(isolated_env) == before
    assert mirror.requests() == []


def test_status_with_nothing_loaded_says_so_and_creates_nothing(isolated_env: Path) -> None:
    before = _created(isolated_env)
    result = runner.invoke(app, ["status", "--target", "pg"])
    assert result.exit_code == 0, result.stderr
    assert "nothing" in result.stdout
    assert _created(isolated_env) == before


@pytest.mark.parametrize(
    ("target", "needs"), [("gcs", "no bucket"), ("bq", "no usable Google credentials")]
)
def test_cloud_status_without_its_settings_says_what_it_needs_and_creates_nothing(
    target: str, needs: str, isolated_env: Path
) -> None:
    """gcs and bq keep their state in the bucket and the dataset (tests/test_status.py
    reads them on the emulators): without a bucket or credentials there is nothing to
    read, which is a configuration error, not an empty ledger."""
    before = _created(isolated_env)
    result = runner.invoke(app, ["status", "--target", target])
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert needs in line
    assert _created(isolated_env) == before


def test_a_dry_run_creates_nothing(mirror: Mirror, isolated_env: Path) -> None:
    before = _created(isolated_env)
    result = runner.invoke(app, ["backfill", "green", "2020-01..2020-03", "--dry-run", "--json"])
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert [(p["taxi"], p["month"], p["target"], p["action"]) for p in plan] == [
        ("green", f"2020-0{m}", "pg", "load") for m in (1, 2, 3)
    ]
    assert _created(isolated_env) == before
    assert mirror.requests() == []


# ---- one failure policy for every command --------------------------------------------


def _serve(mirror: Mirror, months: tuple[str, ...]) -> None:
    for month in months:
        mirror.add_month("green", month, rows=50)


@pytest.mark.integration
def test_load_pg_records_a_missing_month_and_loads_the_others(mirror: Mirror, pg_url: str) -> None:
    _serve(mirror, ("2020-04", "2020-06"))
    result = runner.invoke(
        app, ["load-pg", "green", "2020-04,2020-05,2020-06", "--pg-url", pg_url, "--json"]
    )
    assert result.exit_code == 4, result.stderr
    summary = json.loads(result.stdout)
    states = {p["month"]: p["state"] for p in summary["partitions"]}
    assert states == {"2020-04": "done", "2020-05": "failed", "2020-06": "done"}
    assert summary["done"] == 2 and summary["failed"] == 1
    error = next(line for line in result.stderr.splitlines() if "taxi-cli: error:" in line)
    assert "1 of 3 partitions failed (first: green 2020-05 -> pg" in error
    with psycopg.connect(pg_url) as conn:
        ledger: dict[str, str] = dict(
            conn.execute("SELECT month, status FROM taxi_cli_loads").fetchall()
        )
        rows = conn.execute("SELECT count(*) FROM green_tripdata").fetchone()
    assert ledger == {"2020-04": "done", "2020-05": "failed", "2020-06": "done"}
    assert rows == (100,)
    # the failed month is retried by the next run; the done ones are skipped
    mirror.add_month("green", "2020-05", rows=50)
    again = runner.invoke(
        app, ["load-pg", "green", "2020-04..2020-06", "--pg-url", pg_url, "--json"]
    )
    assert again.exit_code == 0, again.stderr
    states = {p["month"]: p["state"] for p in json.loads(again.stdout)["partitions"]}
    assert states == {"2020-04": "skipped", "2020-05": "done", "2020-06": "skipped"}


@pytest.mark.integration
def test_fail_fast_stops_at_the_first_failure(mirror: Mirror, pg_url: str) -> None:
    _serve(mirror, ("2020-06",))
    result = runner.invoke(
        app,
        ["load-pg", "green", "2020-05,2020-06", "--pg-url", pg_url, "--fail-fast", "--json"],
    )
    assert result.exit_code == 4, result.stderr
    states = {p["month"]: p["state"] for p in json.loads(result.stdout)["partitions"]}
    assert states == {"2020-05": "failed", "2020-06": "not run"}


@pytest.mark.integration
@pytest.mark.parametrize("command", ["load-gcs", "load-bq"])
def test_cloud_loads_record_a_missing_month_and_load_the_others(
    command: str, mirror: Mirror, gcp: Gcp
) -> None:
    _serve(mirror, ("2020-04", "2020-06"))
    args = [command, "green", "2020-04,2020-05,2020-06", "--json"]
    result = runner.invoke(app, args + (["--create-dataset"] if command == "load-bq" else []))
    assert result.exit_code == 4, result.stderr
    states = {p["month"]: p["state"] for p in json.loads(result.stdout)["partitions"]}
    assert states == {"2020-04": "done", "2020-05": "failed", "2020-06": "done"}
    target = command.removeprefix("load-")
    (destination,) = make(load_settings(), TargetName(target), reading=True)
    ledger = {r.month: r.status for r in destination.ledger(read_only=True)}
    assert ledger == {"2020-04": "done", "2020-05": "failed", "2020-06": "done"}


@pytest.mark.integration
def test_gcs_plus_bq_uploads_once_and_bq_reads_that_object(mirror: Mirror, gcp: Gcp) -> None:
    _serve(mirror, ("2020-04",))
    result = runner.invoke(
        app,
        ["backfill", "green", "2020-04", "-t", "gcs+bq", "--create-dataset", "--json", "-j", "1"],
    )
    assert result.exit_code == 0, result.stderr
    gcs, bq = json.loads(result.stdout)["partitions"]
    assert gcs["result"]["action"] == "uploaded"
    assert bq["result"]["source"] == gcs["result"]["where"]
    # one upload session for the object: the bq step did not upload it again
    blob = gcp.storage().bucket(gcp.bucket).get_blob("green/green_tripdata_2020-04.parquet")
    assert blob.generation == gcs["result"]["generation"]


# ---- release windows are a hint ------------------------------------------------------


@pytest.mark.integration
def test_a_named_month_outside_the_window_is_loaded_when_the_source_has_it(
    mirror: Mirror, pg_url: str
) -> None:
    mirror.add_month("green", "2022-01", rows=30)
    result = runner.invoke(app, ["load-pg", "green", "2022-01", "--pg-url", pg_url, "--json"])
    assert result.exit_code == 0, result.stderr
    (part,) = json.loads(result.stdout)["partitions"]
    assert (part["state"], part["rows"]) == ("done", 30)
    assert "outside the known window 2019-01..2021-07; trying" in part["reason"]
    assert [r.path for r in mirror.gets()] == ["/green/green_tripdata_2022-01.csv.gz"]


@pytest.mark.integration
def test_months_the_source_lacks_fail_naming_the_known_window(mirror: Mirror, pg_url: str) -> None:
    result = runner.invoke(
        app, ["backfill", "green", "2022-01..2022-06", "--pg-url", pg_url, "--json"]
    )
    assert result.exit_code == 4, result.stderr
    summary = json.loads(result.stdout)
    assert summary["failed"] == 6
    for part in summary["partitions"]:
        assert "404" in part["error"] and "2019-01..2021-07" in part["error"]


def test_extract_all_skips_months_outside_each_window(mirror: Mirror) -> None:
    mirror.add_month("fhv", "2019-12", rows=20)
    result = runner.invoke(app, ["extract", "fhv", "2019-12", "--json"])
    assert result.exit_code == 0, result.stderr
    mirror.clear_log()
    # `all` brings in fhv only inside its window: 2020-01 is not even asked for
    through_all = runner.invoke(app, ["backfill", "all", "2020-01", "--dry-run", "--json"])
    assert through_all.exit_code == 0, through_all.stderr
    assert "fhv" not in {p["taxi"] for p in json.loads(through_all.stdout)}


@pytest.mark.integration
def test_extract_reports_every_file_done_or_failed_and_exits_4(mirror: Mirror) -> None:
    _serve(mirror, ("2020-04", "2020-06"))
    result = runner.invoke(app, ["extract", "green", "2020-04..2020-06", "--json"])
    assert result.exit_code == 4, result.stderr
    payload = json.loads(result.stdout)
    assert [(p["month"], p["state"]) for p in payload["partitions"]] == [
        ("2020-04", "done"),
        ("2020-05", "failed"),
        ("2020-06", "done"),
    ]
    assert payload["partitions"][0]["rows"] == 50
    assert "404" in payload["partitions"][1]["error"]


# ---- what a run shows: per-partition timings and a byte bar while downloading -----------


@pytest.mark.integration
def test_the_summary_times_download_verify_and_load_per_partition(
    mirror: Mirror, pg_url: str
) -> None:
    _serve(mirror, ("2020-04",))
    result = runner.invoke(app, ["backfill", "green", "2020-04", "--pg-url", pg_url, "--json"])
    assert result.exit_code == 0, result.stderr
    (part,) = json.loads(result.stdout)["partitions"]
    for phase in ("download_seconds", "verify_seconds", "load_seconds"):
        assert isinstance(part[phase], float) and part[phase] >= 0, phase
    assert part["seconds"] >= part["load_seconds"]
    text = runner.invoke(
        app, ["backfill", "green", "2020-04", "--pg-url", pg_url, "--reprocess", "completed"]
    )
    assert text.exit_code == 0, text.stderr
    header = next(line for line in text.stdout.splitlines() if "partition" in line)
    assert all(word in header for word in ("download", "verify", "load"))


def test_a_downloading_partition_shows_its_bytes_not_a_bare_spinner() -> None:
    import io

    from rich.console import Console

    from taxi_cli.catalog import GREEN, Partition
    from taxi_cli.console import Output
    from taxi_cli.load import Runner, RunOptions, _Event
    from taxi_cli.plan import Action, PlanItem, State, WorkUnit

    screen = io.StringIO()
    out = Output(err=Console(file=screen, force_terminal=True, width=120))
    item = PlanItem("green", "2020-04", "pg", State.MISSING, Action.LOAD, "not loaded yet")
    part = Partition(GREEN, "2020-04")
    runner_ = Runner(load_settings(), RunOptions(label="backfill"), [], [part], [item], out)
    unit = WorkUnit(part, (item,))
    with runner_._progress() as show:
        show(_Event("state", unit, "downloading"))
        show(_Event("bytes", unit, done=3 << 20, total=12 << 20))
    shown = screen.getvalue()
    assert "green 2020-04: downloading" in shown
    assert "3.0/12.0 MiB" in shown
