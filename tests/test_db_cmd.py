"""`taxi-cli db status|start|stop|url` and the embedded default target, on a temp dir."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from taxi_cli.cli import app
from taxi_cli.postgres import embedded
from tests.fixtures_mirror import Mirror
from tests.pg_helpers import GREEN_04, count

pytestmark = pytest.mark.integration
runner = CliRunner()


@pytest.fixture
def pg_data(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """TAXI_PG_DATA in a short temp dir (unix socket paths are limited to ~100 bytes)."""
    path = tmp_path_factory.mktemp("emb") / "pgdata"
    monkeypatch.setenv("TAXI_PG_DATA", str(path))
    try:
        yield path
    finally:
        embedded.stop(path)


def _status() -> dict[str, Any]:
    result = runner.invoke(app, ["db", "status", "--json"])
    assert result.exit_code == 0, result.stderr
    payload: dict[str, Any] = json.loads(result.stdout)
    return payload


def test_db_lifecycle_and_the_embedded_default_target(mirror: Mirror, pg_data: Path) -> None:
    before = _status()
    assert before["running"] is False and before["data_dir"] == str(pg_data)
    stopped = runner.invoke(app, ["db", "status"])
    assert stopped.stdout.startswith("stopped")

    started = runner.invoke(app, ["db", "start"])
    assert started.exit_code == 0, started.stderr
    assert started.stdout.startswith("running")
    status = _status()
    assert status["running"] is True and status["version"] == "18"
    assert isinstance(status["pid"], int)

    url = runner.invoke(app, ["db", "url"]).stdout.strip()
    assert url == status["url"] and url.startswith("postgresql://postgres@/postgres?host=")
    psql = embedded._bin("psql")  # the URL as a user would pass it to psql
    out = subprocess.run([psql, url, "-Atc", "SELECT 40 + 2"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "42", out.stderr
    with psycopg.connect(url) as conn:  # our tuning is applied
        assert conn.execute("SHOW wal_level").fetchone() == ("minimal",)
        assert conn.execute("SHOW max_wal_senders").fetchone() == ("0",)

    # no --pg-url, no TAXI_PG_URL, no PGHOST: load-pg uses the embedded server
    mirror.add_file(GREEN_04)
    loaded = runner.invoke(app, ["load-pg", "green", "2020-04", "--json"])
    assert loaded.exit_code == 0, loaded.stderr
    assert json.loads(loaded.stdout)["partitions"][0]["rows"] == 35_612
    with psycopg.connect(url) as conn:
        assert count(conn, "green_tripdata") == 35_612

    down = runner.invoke(app, ["db", "stop"])
    assert down.exit_code == 0 and down.stdout.startswith("stopped")
    assert _status()["running"] is False
    again = runner.invoke(app, ["db", "stop"])
    assert again.stdout.startswith("not running")

    # the data persists: a restart serves the loaded rows again
    assert runner.invoke(app, ["db", "start"]).exit_code == 0
    with psycopg.connect(embedded.status(pg_data).url or "") as conn:
        assert count(conn, "green_tripdata") == 35_612


def test_db_rejects_an_unknown_action(pg_data: Path) -> None:
    result = runner.invoke(app, ["db", "restart-all"])
    assert result.exit_code == 2
    assert "Invalid value for 'action'" in result.stderr and "'status', 'start'" in result.stderr
