"""Upstream drift: a month re-published upstream (other bytes, another ETag) is found by
the plan with one HEAD per done month, reported by a plain rerun, reloaded from a fresh
download by `--reprocess changed` (that month only), and by `--catch-up` unless
`TAXI_CATCH_UP_CHANGED=false`. Real CLI, the local mirror, an embedded PostgreSQL."""

from __future__ import annotations

import json

import psycopg
import pytest
from typer.testing import CliRunner

from taxi_cli.catalog import month_range
from taxi_cli.cli import app
from tests.fixtures_mirror import Mirror, rel_path

pytestmark = pytest.mark.integration
runner = CliRunner()
MONTHS = month_range("2020-01", "2020-03")


def _backfill(pg_url: str, *args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    result = runner.invoke(
        app, ["backfill", "green", *args, "--target", "pg", "--pg-url", pg_url, "--json"], env=env
    )
    assert result.exit_code == 0, result.stderr
    parsed: dict[str, object] = json.loads(result.stdout)
    return parsed


def _by_month(summary: object) -> dict[str, dict[str, object]]:
    items = summary["partitions"] if isinstance(summary, dict) else summary
    assert isinstance(items, list)
    return {str(p["month"]): p for p in items}


def _ledger(pg_url: str) -> dict[str, tuple[int, int, str]]:
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT month, rows, upstream_size, upstream_etag FROM taxi_cli_loads"
        ).fetchall()
    return {month: (count, size, etag) for month, count, size, etag in rows}


@pytest.fixture
def loaded(mirror: Mirror, pg_url: str) -> str:
    for month in MONTHS:
        mirror.add_month("green", month, rows=100)
    summary = _backfill(pg_url, "2020-01..2020-03")
    assert summary["done"] == 3
    return pg_url


def test_a_republished_month_is_reported_then_reloaded_alone(loaded: str, mirror: Mirror) -> None:
    before = _ledger(loaded)
    old_size = before["2020-02"][1]
    new = mirror.add_month("green", "2020-02", rows=103, seed=7)  # re-published upstream
    new_size = new.stat().st_size
    assert new_size != old_size
    change = f"changed upstream (size {old_size} -> {new_size})"

    plan = _by_month(_backfill(loaded, "2020-01..2020-03", "--dry-run"))
    assert plan["2020-02"]["action"] == "skip"
    assert plan["2020-02"]["why"] == f"{change}; --reprocess changed reloads it"
    assert plan["2020-01"]["why"] == plan["2020-03"]["why"] == "done, same source sha256"

    mirror.clear_log()
    plain = _backfill(loaded, "2020-01..2020-03")  # a plain rerun reports it, loads nothing
    assert plain["skipped"] == 3 and plain["done"] == 0
    assert _by_month(plain)["2020-02"]["reason"] == f"{change}; --reprocess changed reloads it"
    assert mirror.gets() == []
    heads = sorted(r.path for r in mirror.requests(method="HEAD"))
    assert heads == [rel_path("green", m) for m in MONTHS]  # one per done month

    mirror.clear_log()
    changed = _backfill(loaded, "2020-01..2020-03", "--reprocess", "changed")
    parts = _by_month(changed)
    assert changed["done"] == 1 and changed["skipped"] == 2
    assert parts["2020-02"]["state"] == "done" and parts["2020-02"]["reason"] == change
    assert parts["2020-02"]["rows"] == 103
    assert [r.path for r in mirror.gets()] == [rel_path("green", "2020-02")]  # fresh bytes
    after = _ledger(loaded)
    assert after["2020-02"][:2] == (103, new_size) and after["2020-02"][2] != before["2020-02"][2]
    assert after["2020-01"] == before["2020-01"] and after["2020-03"] == before["2020-03"]
    with psycopg.connect(loaded) as conn:
        found = conn.execute(
            "SELECT count(*) FROM green_tripdata WHERE filename = 'green_tripdata_2020-02.csv'"
        ).fetchone()
    assert found == (103,)

    again = _backfill(loaded, "2020-01..2020-03", "--reprocess", "changed")
    assert again["done"] == 0 and again["skipped"] == 3
    checked = runner.invoke(app, ["check", "--pg-url", loaded, "--json"])
    lines = {p["month"]: p for p in json.loads(checked.stdout)["partitions"]}
    assert lines["2020-02"]["actual_rows"] == lines["2020-02"]["ledger_rows"] == 103
    # synthetic months are not the release's: only the published counts disagree
    assert all("published count" in p for line in lines.values() for p in line["problems"])


def test_catch_up_reloads_changed_months_unless_turned_off(loaded: str, mirror: Mirror) -> None:
    mirror.add_month("green", "2020-01", rows=90, seed=3)  # an old month re-published
    off = _backfill(loaded, "--catch-up", env={"TAXI_CATCH_UP_CHANGED": "false"})
    assert off["done"] == 0
    assert _ledger(loaded)["2020-01"][0] == 100

    on = _backfill(loaded, "--catch-up")
    parts = _by_month(on)
    assert on["done"] == 1 and list(parts) == ["2020-01"]
    assert str(parts["2020-01"]["reason"]).startswith("changed upstream (size ")
    assert _ledger(loaded)["2020-01"][0] == 90
