"""Keep the developer's machine out of every test: env vars, config files, cache dirs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

_PREFIXES = ("TAXI_", "PG", "GOOGLE_", "STORAGE_EMULATOR_HOST", "BQEMU_")


@pytest.fixture(autouse=True)
def isolated_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Scrub our variables and point every per-user dir at a fresh temp dir."""
    for name in list(os.environ):
        if name.startswith(_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("TAXI_DATA_DIR", str(home / "downloads"))
    monkeypatch.setenv("TAXI_STATE_DIR", str(home / "taxi-state"))
    monkeypatch.chdir(home)
    yield home
