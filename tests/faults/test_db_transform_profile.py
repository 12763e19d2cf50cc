"""SIGKILL in `transform` leaves no readable secret behind: the generated dbt profile
(it holds the password) is written only where its owner can read it, and the next run
of the same target removes what the killed run left. SIGTERM exits 130 and removes it
at once; no stale lock blocks the next run."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest

from tests.faults.db_support import SECRET, cli, finish, interrupt, role_url, start
from tests.fixtures_mirror import Mirror
from tests.pg_helpers import while_running

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _profiles_root() -> Path:
    return Path(os.environ["TAXI_STATE_DIR"]) / "dbt" / "pg" / "profiles"


def _wait_for_profile(proc) -> Path:  # type: ignore[no-untyped-def]
    def written() -> Path | None:
        found = list(_profiles_root().glob("*/profiles.yml"))
        return found[0] if found and found[0].stat().st_size > 0 else None

    return while_running(proc, written, "a written dbt profile", every=0.01)


@pytest.fixture
def loaded(mirror: Mirror, pg_url: str) -> str:
    """Zones and a small green month, loaded by the CLI; a URL with a password."""
    mirror.add_zones()
    mirror.add_month("green", "2020-04", rows=300, seed=3)
    for args in (("zones",), ("green", "2020-04")):
        assert cli("load-pg", *args, "--pg-url", pg_url, "-q").code == 0
    return role_url(pg_url, "postgres")  # trust auth: the password only has to stay secret


def test_sigkill_leaves_the_profile_private_and_the_next_run_removes_it(loaded: str) -> None:
    env = {"TAXI_PG_URL": loaded}
    proc = start("transform", env=env)
    profile = _wait_for_profile(proc)
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    assert profile.exists() and SECRET in profile.read_text()  # the kill skipped cleanup
    for path in (_profiles_root(), profile.parent):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert stat.S_IMODE(profile.stat().st_mode) == 0o600

    run = cli("transform", "-q", env=env)  # the dead run's lock does not block it
    assert run.code == 0, run.err
    assert not profile.parent.exists()
    assert list(_profiles_root().iterdir()) == []
    assert SECRET not in run.out + run.err


def test_sigterm_exits_130_and_removes_the_profile(loaded: str) -> None:
    env = {"TAXI_PG_URL": loaded}
    proc = start("transform", env=env)
    profile = _wait_for_profile(proc)
    run = interrupt(proc, signal.SIGTERM)
    assert run.code == 130, run.err
    assert "Traceback" not in run.err
    assert not profile.exists()
    assert SECRET not in run.out + run.err
    again = cli("transform", "-q", env=env)
    assert again.code == 0, again.err
