"""The SQLite ledger of the gcs/bq targets: states, migrations, concurrent writers."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from taxi_cli.config import load_settings
from taxi_cli.errors import ConfigError
from taxi_cli.ledger import LEDGER_FILE, MIGRATIONS, StateLedger


def _ledger() -> StateLedger:
    return StateLedger(load_settings())


def test_ledger_lives_in_the_state_dir_in_wal_mode(isolated_env: Path) -> None:
    ledger = _ledger()
    ledger.record_done("gcs", "green", "2020-01", "green_tripdata_2020-01.csv", "ab" * 32, 10)
    path = isolated_env / "taxi-state" / LEDGER_FILE
    assert ledger.path == path and path.is_file()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == len(
            MIGRATIONS
        )


def test_done_then_failed_keeps_the_committed_data_described() -> None:
    ledger = _ledger()
    ledger.record_done(
        "bq", "yellow", "2020-04", "yellow_tripdata_2020-04.csv", "c" * 64, 237_993, {"t": "x"}
    )
    ledger.record_failed("bq", "yellow", "2020-04", "yellow_tripdata_2020-04.csv", "boom")
    (row,) = ledger.rows("bq")
    assert (row.status, row.error, row.rows, row.sha256) == ("failed", "boom", 237_993, "c" * 64)
    assert row.detail == {"t": "x"}
    ledger.record_done("bq", "yellow", "2020-04", "yellow_tripdata_2020-04.csv", "d" * 64, 5)
    (row,) = ledger.rows("bq")
    assert (row.status, row.error, row.rows, row.sha256) == ("done", None, 5, "d" * 64)
    assert row.finished is not None and row.finished.tzinfo is not None


def test_targets_are_separate_and_rows_are_ordered() -> None:
    ledger = _ledger()
    for month in ("2020-03", "2020-01", "2020-02"):
        ledger.record_done("gcs", "green", month, f"green_tripdata_{month}.csv", "e" * 64, 1)
    ledger.record_failed("bq", "green", "2020-01", "green_tripdata_2020-01.csv", "no dataset")
    assert [r.month for r in ledger.rows("gcs")] == ["2020-01", "2020-02", "2020-03"]
    assert [(r.status, r.sha256) for r in ledger.rows("bq")] == [("failed", None)]
    assert ledger.get("gcs", "green", "2020-02") is not None
    assert ledger.get("pg", "green", "2020-02") is None
    ledger.forget("gcs", "green", "2020-02")
    assert ledger.get("gcs", "green", "2020-02") is None


def test_a_newer_schema_is_refused(isolated_env: Path) -> None:
    _ledger().rows("gcs")
    with sqlite3.connect(isolated_env / "taxi-state" / LEDGER_FILE) as conn:
        conn.execute("INSERT INTO schema_version VALUES (?)", (len(MIGRATIONS) + 1,))
    with pytest.raises(ConfigError, match="newer than this taxi-cli knows"):
        _ledger().rows("gcs")


def test_concurrent_writers_all_land() -> None:
    ledgers = [_ledger() for _ in range(4)]
    errors: list[BaseException] = []

    def write(index: int) -> None:
        try:
            for month in range(1, 13):
                ledgers[index].record_done(
                    "gcs", f"t{index}", f"2020-{month:02d}", "f.csv", "0" * 64, month
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = _ledger().rows("gcs")
    assert len(rows) == 48
    assert sum(r.rows or 0 for r in rows) == 4 * sum(range(1, 13))
