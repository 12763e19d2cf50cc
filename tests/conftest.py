"""Shared test set-up. Fixtures live in plugin modules, one per area:

- tests/fixtures_env.py: an isolated environment for every test (autouse)
- tests/fixtures_mirror.py: a local HTTP release mirror (`TAXI_SOURCE_URL`)
- tests/fixtures_pg.py: an embedded PostgreSQL for the session
- tests/fixtures_gcp.py: GCS and BigQuery emulators
- tests/fixtures_google_auth.py: local Google token services, credential files of each type
"""

from __future__ import annotations

from pathlib import Path

pytest_plugins = [
    "tests.fixtures_env",
    "tests.fixtures_mirror",
    "tests.fixtures_pg",
    "tests.fixtures_gcp",
    "tests.fixtures_google_auth",
]

SHARED_DATA = Path(__file__).resolve().parent / "data"
