"""An embedded server left running by an install that was deleted since (a removed
virtualenv) answers, but cannot load its own libraries: taxi-cli restarts it with the
install it runs from instead of failing later on the first plpgsql block."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from taxi_cli.postgres import embedded

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("stale") / "pgdata"  # short: unix socket paths are limited
    try:
        yield path
    finally:
        embedded.stop(path)


def _open_to_all(path: Path) -> None:
    """The server runs as another user when we are root: let it read and run the copy."""
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = Path(root) / name
            if not full.is_symlink():
                full.chmod(full.stat().st_mode | 0o055)
    for parent in [path, *path.parents]:
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o055)


def test_a_server_from_a_deleted_install_is_restarted(
    pg_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    embedded.ensure_running(pg_data)  # initdb and tuning with this install
    embedded.stop(pg_data)
    install = Path(embedded._bin("pg_ctl")).parents[1]
    old = tmp_path_factory.mktemp("old-venv") / "pginstall"
    shutil.copytree(install, old, symlinks=True)
    _open_to_all(old)
    started = subprocess.run(
        [
            str(old / "bin" / "pg_ctl"),
            "-D",
            str(pg_data),
            "-w",
            "-l",
            str(pg_data / "log"),
            "start",
        ],
        user=embedded._system_user(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    shutil.rmtree(old.parent)  # the virtualenv is removed; its server still runs
    stale = embedded.status(pg_data)
    assert stale.running and stale.url
    assert embedded._deleted_install(stale.pid) == str(old / "bin" / "postgres")
    with psycopg.connect(stale.url, autocommit=True) as conn, pytest.raises(psycopg.Error):
        conn.execute("DO $$ BEGIN PERFORM 1; END $$")  # plpgsql.so is gone with it

    url = embedded.ensure_running(pg_data)
    fresh = embedded.status(pg_data)
    assert fresh.running and fresh.pid != stale.pid
    assert embedded._deleted_install(fresh.pid) is None
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DO $$ BEGIN PERFORM 1; END $$")
