"""`transform` takes dbt's selection flags directly: --select, --exclude, --vars,
--threads, --full-refresh (not only after `--`), on a real PostgreSQL with tables
written by the real loaders. What dbt received is read back from its run_results.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from taxi_cli.catalog import GREEN
from taxi_cli.cli import app
from tests.fixtures_mirror import Mirror
from tests.test_transform import query, transform

pytestmark = pytest.mark.integration

TEST = "stg_green__payment_type__accepted_values"


@pytest.fixture
def broken(pg_url: str, mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> str:
    """Zones and a green month (loaded by load-pg), one payment type outside the TLC's (9)."""
    monkeypatch.setenv("TAXI_PG_URL", pg_url)
    mirror.add_zones()
    mirror.add_month(GREEN, "2020-04", rows=400, seed=3)
    for argv in (["load-pg", "zones"], ["load-pg", "green", "2020-04"]):
        loaded = CliRunner().invoke(app, argv)
        assert loaded.exit_code == 0, loaded.stderr
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE green_tripdata SET payment_type = 9 WHERE unique_row_id = "
            "(SELECT min(unique_row_id) FROM green_tripdata WHERE vendorid IS NOT NULL)"
        )
    return pg_url


def _dbt_args(stdout: str) -> dict[str, Any]:
    target = Path(json.loads(stdout)["target_path"])
    args: dict[str, Any] = json.loads((target / "run_results.json").read_text())["args"]
    return args


def _statuses(stdout: str) -> dict[str, str]:
    return {n["name"]: n["status"] for n in json.loads(stdout)["nodes"]}


def test_select_and_exclude_are_dbt_flags(broken: str) -> None:
    code, out, err = transform("--select", "stg_green_tripdata", "--json")
    assert code == 1
    assert _statuses(out)[TEST] == "fail"

    code, out, err = transform("--select", "stg_green_tripdata", "--exclude", TEST, "--json")
    assert code == 0, err
    statuses = _statuses(out)
    assert TEST not in statuses
    assert statuses["stg_green_tripdata"] == "success"
    assert _dbt_args(out)["exclude"] == [TEST]


def test_vars_merge_with_ours(broken: str) -> None:
    widened = "{payment_type_values: [0, 1, 2, 3, 4, 5, 6, 9]}"
    code, out, err = transform("-s", "stg_green_tripdata", "--vars", widened, "--json")
    assert code == 0, err
    assert _statuses(out)[TEST] == "pass"
    dbt_vars = _dbt_args(out)["vars"]
    assert dbt_vars["payment_type_values"] == [0, 1, 2, 3, 4, 5, 6, 9]
    assert dbt_vars["source_schema"] == "public"  # taxi-cli's own vars are still passed
    assert query(broken, "SELECT count(*) FROM stg_green_tripdata")[0][0] > 0


def test_threads_and_full_refresh_reach_dbt(broken: str) -> None:
    code, out, err = transform(
        "-s", "stg_green_tripdata", "--exclude", TEST, "--threads", "3", "--full-refresh", "--json"
    )
    assert code == 0, err
    args = _dbt_args(out)
    assert args["threads"] == 3
    assert args["full_refresh"] is True
    assert _statuses(out)["stg_green_tripdata"] == "success"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--vars", "[1, 2]"], "--vars must be a YAML mapping"),
        (["--vars", "{a: "], "is not YAML"),
        (["--threads", "0"], "--threads must be at least 1"),
        (["--select", "no_such_model"], "matched no model or test"),
    ],
)
def test_bad_flags_exit_2(broken: str, flags: list[str], message: str) -> None:
    code, _, err = transform(*flags)
    assert code == 2, err
    assert err.strip().splitlines()[-1].startswith("taxi-cli: error: ")
    assert message in err
