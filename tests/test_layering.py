"""The layering is enforced, not just drawn: `make lint` runs import-linter's contracts
(pyproject.toml), and these tests prove the contracts bite and the lazy imports defer.

Both run the real tools in a subprocess: only a fresh interpreter's `sys.modules` shows
what an import really loads, and only a planted violation shows a contract can fail.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_copy(tmp_path: Path, plant: tuple[str, str] | None) -> subprocess.CompletedProcess[str]:
    """lint-imports over a copy of the package, with one line planted in one module."""
    shutil.copytree(REPO / "taxi_cli", tmp_path / "taxi_cli")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    if plant is not None:
        module, line = plant
        with (tmp_path / module).open("a") as fh:
            fh.write(f"\n{line}  # planted\n")
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", "pyproject.toml", "--no-cache"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_contracts_hold_for_the_package_as_it_is(tmp_path: Path) -> None:
    done = _lint_copy(tmp_path, None)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("taxi_cli/model.py", "import typer", "the domain imports no driver"),
        ("taxi_cli/catalog.py", "import psycopg", "the domain imports no driver"),
        ("taxi_cli/gcp/gcs.py", "from taxi_cli import extract", "the destinations are leaves"),
        ("taxi_cli/load.py", "import taxi_cli.cli", "cli -> jobs"),
        ("taxi_cli/postgres/ddl.py", "import taxi_cli.gcp.bq", "cli -> jobs"),
        ("taxi_cli/status.py", "import typer", "only the CLI imports typer"),
    ],
)
def test_a_planted_violation_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    done = _lint_copy(tmp_path, (module, line))
    assert done.returncode != 0, done.stdout
    broken = done.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, done.stdout


def _loaded_by(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "statement",
    [
        "import taxi_cli.cli",
        "import taxi_cli.postgres.pgbinary, taxi_cli.postgres.md5vec",
        "import taxi_cli.plan, taxi_cli.catalog, taxi_cli.model, taxi_cli.destinations",
    ],
)
def test_lazy_imports_really_defer_the_drivers(statement: str) -> None:
    # (`google` and `google.cloud` are namespace packages a .pth file loads at start-up)
    heavy: tuple[str, ...] = ("psycopg", "polars", "dbt", "duckdb", "httpx", "google.auth")
    heavy += ("google.api_core", "google.cloud.storage", "google.cloud.bigquery")
    loaded = _loaded_by(statement)
    assert [m for m in loaded if m.split(".")[0] in heavy or m.startswith(heavy)] == []
