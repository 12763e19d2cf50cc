"""One backfill per target: a second run is refused naming the holder; a dead holder's
lock is taken over (the kernel released its flock)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taxi_cli.choices import TargetName
from taxi_cli.cli import app
from taxi_cli.config import load_settings
from taxi_cli.destinations import lock_name, make
from taxi_cli.errors import LockedError
from taxi_cli.lock import RunLock, lock_path, read_holder

runner = CliRunner()

HOLD = """
import sys, time
from pathlib import Path
from taxi_cli.lock import RunLock
with RunLock(Path(sys.argv[1]), what="test"):
    print("held", flush=True)
    time.sleep(120)
"""


def _hold(path: Path) -> subprocess.Popen[str]:
    """Another process holding the lock, as a running backfill would."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def gcs_lock(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TAXI_GCS_BUCKET", "taxi-test")
    cfg = load_settings()
    (target,) = make(cfg, TargetName.GCS)
    return lock_path(cfg, lock_name(target))


def test_second_backfill_is_refused_naming_the_running_one(gcs_lock: Path) -> None:
    holder = _hold(gcs_lock)
    try:
        result = runner.invoke(app, ["backfill", "green", "2020-01", "--target", "gcs"])
        assert result.exit_code == 1
        line = result.stderr.strip()
        assert len(line.splitlines()) == 1
        assert line.startswith("taxi-cli: error: another backfill into gs://taxi-test/ is running")
        assert f"pid {holder.pid} on {socket.gethostname()}, started 20" in line
        # gcs+bq needs the gcs lock as well
        both = runner.invoke(app, ["backfill", "green", "2020-01", "--target", "gcs+bq"])
        assert both.exit_code == 1 and f"pid {holder.pid}" in both.stderr
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_a_killed_process_is_taken_over(gcs_lock: Path) -> None:
    holder = _hold(gcs_lock)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    stale = read_holder(gcs_lock)
    assert stale is not None and stale.pid == holder.pid  # the record is still there
    with RunLock(gcs_lock, what="backfill"):
        mine = json.loads(gcs_lock.read_text())
        assert mine["pid"] == os.getpid()
        assert mine["host"] == socket.gethostname()
        assert isinstance(mine["argv"], list)


def test_lock_wait_and_release_in_process(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "x.lock"
    first = RunLock(path, what="backfill into x")
    first.acquire()
    with pytest.raises(LockedError, match=r"another backfill into x is running \(pid "):
        RunLock(path, what="backfill into x").acquire()
    with pytest.raises(LockedError):  # waiting a while does not help while it is held
        RunLock(path, what="backfill into x", wait=0.3).acquire()
    first.release()
    with RunLock(path, what="backfill into x"):
        pass


def test_pg_locks_are_keyed_by_database_and_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    def name(url: str, schema: str) -> str:
        cfg = load_settings({"pg_url": url, "pg_schema": schema})
        return lock_name(make(cfg, TargetName.PG)[0])

    a = name("postgresql://u:secret@db:5432/taxi", "public")
    assert a == name("postgresql://u:other@db:5432/taxi", "public")  # password not in the key
    assert a != name("postgresql://u:secret@db:5432/taxi", "staging")
    assert a != name("postgresql://u:secret@db2:5432/taxi", "public")
    assert "secret" not in a
