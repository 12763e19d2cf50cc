"""Planning and `backfill --dry-run` against a ledger in mixed states, per --reprocess.

The ledger is the gcs target's real one: objects with taxi-cli's metadata in the GCS
emulator's bucket, plus the local record of a failed attempt; the cached files are real
files under the data dir. The dry run must not download.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taxi_cli.catalog import FHV, GREEN, select
from taxi_cli.choices import Reprocess
from taxi_cli.cli import app
from taxi_cli.config import load_settings
from taxi_cli.extract import data_file
from taxi_cli.ledger import StateLedger
from taxi_cli.model import LedgerRow
from taxi_cli.plan import Action, State, make_plan, work_units
from tests.fixtures_gcp import Gcp

runner = CliRunner()


def _cache(month: str, content: bytes) -> str:
    path = data_file(load_settings(), GREEN, month)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return hashlib.sha256(content).hexdigest()


class Mixed:
    """The gcs destination's ledger, read as planning reads it."""

    def rows(self, target: str) -> list[LedgerRow]:
        from taxi_cli.choices import TargetName
        from taxi_cli.destinations import make

        (lake,) = make(load_settings(), TargetName(target), reading=True)
        return list(lake.ledger(read_only=True))


@pytest.fixture
def mixed(gcp: Gcp) -> Mixed:
    """green 2020-01 done, same file cached; 02 done, a different file cached;
    03 done, nothing cached; 04 failed; 05 never loaded."""
    same = _cache("2020-01", b"january")
    _cache("2020-02", b"february, re-released")
    bucket = gcp.storage().bucket(gcp.bucket)
    for month, sha in (("2020-01", same), ("2020-02", "0" * 64), ("2020-03", "3" * 64)):
        blob = bucket.blob(f"green/green_tripdata_{month}.parquet")
        blob.metadata = {"taxi-cli-source-sha256": sha, "taxi-cli-rows": "100"}
        blob.upload_from_string(b"PAR1")
    StateLedger(load_settings()).record_failed(
        "gcs", "green", "2020-04", "green_tripdata_2020-04.csv", "HTTP 503"
    )
    return Mixed()


EXPECTED = {
    "none": ["skip", "reload", "skip", "skip", "load"],
    "failed": ["skip", "reload", "skip", "retry", "load"],
    "all": ["reload", "reload", "reload", "reload", "load"],
}


@pytest.mark.integration
@pytest.mark.parametrize("reprocess", sorted(EXPECTED))
def test_plan_per_reprocess(mixed: Mixed, reprocess: str) -> None:
    cfg = load_settings()
    from taxi_cli.extract import cached_sha256

    plan = make_plan(
        select("green", "2020-01..2020-05"),
        ["gcs"],
        {"gcs": mixed.rows("gcs")},
        reprocess=Reprocess(reprocess),
        local_sha256=lambda part: cached_sha256(cfg, part.taxi, part.month),
    )
    assert [str(i.action) for i in plan] == EXPECTED[reprocess]
    assert [i.state for i in plan] == [State.DONE] * 3 + [State.FAILED, State.MISSING]
    if reprocess == "none":
        assert "source changed" in plan[1].reason
        assert "not cached" in plan[2].reason
        assert "--reprocess failed" in plan[3].reason


@pytest.mark.integration
@pytest.mark.parametrize("reprocess", sorted(EXPECTED))
def test_dry_run_prints_the_plan_and_changes_nothing(
    mixed: Mixed, reprocess: str, isolated_env: Path
) -> None:
    before = mixed.rows("gcs")
    result = runner.invoke(
        app,
        ["backfill", "green", "2020-01..2020-05", "--target", "gcs", "--dry-run", "--json"]
        + ["--reprocess", reprocess],
    )
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)  # a list: usable as a CI matrix
    assert [p["action"] for p in plan] == EXPECTED[reprocess]
    assert [p["month"] for p in plan] == [f"2020-0{m}" for m in range(1, 6)]
    assert mixed.rows("gcs") == before
    assert not (isolated_env / "taxi-state" / "locks").exists()  # a dry run takes no lock
    text = runner.invoke(
        app, ["backfill", "green", "2020-01..2020-05", "--target", "gcs", "--dry-run"]
    )
    assert text.exit_code == 0
    assert "green 2020-05 -> gcs" in text.stdout and "load" in text.stdout


def test_order_backwards_windows_and_units() -> None:
    parts = select("yellow,green,fhv", "2019-12..2020-01")
    plan = make_plan(parts, ["gcs", "bq"], {})
    assert [(i.month, i.taxi, i.target) for i in plan[:4]] == [
        ("2019-12", "yellow", "gcs"),
        ("2019-12", "yellow", "bq"),
        ("2019-12", "green", "gcs"),
        ("2019-12", "green", "bq"),
    ]
    # fhv named explicitly: tried outside its known window, and the plan says so
    fhv_2020 = [i for i in plan if i.taxi == "fhv" and i.month == "2020-01"]
    assert {i.action for i in fhv_2020} == {Action.LOAD}
    assert "outside the known window 2019-01..2019-12; trying" in fhv_2020[0].reason
    # through `all` only: months outside a type's window are not planned at all
    assert not [
        p for p in select("all", "2019-12..2020-01") if p.taxi is FHV and p.month > "2019-12"
    ]
    backwards = make_plan(select("yellow,green", "2019-12..2020-01"), ["pg"], {}, backwards=True)
    assert [(i.month, i.taxi) for i in backwards] == [
        ("2020-01", "yellow"),
        ("2020-01", "green"),
        ("2019-12", "yellow"),
        ("2019-12", "green"),
    ]
    units = work_units(plan, parts)
    assert [u.name for u in units] == ["yellow 2019-12", "green 2019-12", "fhv 2019-12"] + [
        "yellow 2020-01",
        "green 2020-01",
        "fhv 2020-01",
    ]
    assert [i.target for i in units[0].items] == ["gcs", "bq"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["green", "--target", "gcs"], "MONTHS is required"),
        (["green", "2020-13", "--target", "gcs"], "bad month '2020-13'"),
        (["purple", "2020-01"], "unknown taxi type 'purple'"),
        (["zones", "2020-01"], "backfill loads months"),
        (["green", "2020-01", "--target", "bq", "--mode", "merge"], "--mode merge is not possible"),
    ],
)
def test_usage_errors_exit_2(
    monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.setenv("TAXI_GCS_BUCKET", "taxi-test")
    result = runner.invoke(app, ["backfill", *args, "--dry-run"])
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("taxi-cli: error: ")
    assert message in result.stderr


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["green", "2020-01", "--target", "s3"], "--target"),
        (["green", "2020-01", "--reprocess", "some"], "--reprocess"),
        (["green", "2020-01", "--jobs", "0"], "--jobs"),
        (["green", "2020-01", "--mode", "upsert"], "--mode"),
    ],
)
def test_bad_choices_exit_2_naming_the_option(args: list[str], option: str) -> None:
    result = runner.invoke(app, ["backfill", *args, "--dry-run"])
    assert result.exit_code == 2, result.stderr
    assert f"Invalid value for '{option}'" in result.stderr


@pytest.mark.integration
def test_airflow_reprocess_names_and_aliases(mixed: Mixed) -> None:
    def actions(*extra: str) -> list[str]:
        args = ["backfill", "green", "2020-01..2020-05", "-t", "gcs", "--dry-run", "--json"]
        result = runner.invoke(app, [*args, *extra])
        assert result.exit_code == 0, result.stderr
        return [p["action"] for p in json.loads(result.stdout)]

    assert actions("--reprocess", "completed") == actions("--reprocess", "all")
    assert actions("--reprocess", "completed") == EXPECTED["all"]
    months = [p for p in actions("--run-backwards")]
    assert months == actions("--backwards")
