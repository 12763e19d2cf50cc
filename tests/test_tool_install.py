"""A new user's install as a tool, from a clean clone: `uv tool install <clone>`.

The repository is cloned (its committed HEAD, as a user gets it), installed as a tool
into a temporary tool dir with its own bin dir (what `uv tool install .` or
`pipx install .` does: an isolated venv, one `taxi-cli` on PATH), and the installed
command then runs from an unrelated directory: `--version`, and a real `extract` from
the local mirror (so the wheel carries the release manifest). The C fast path is built.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.fixtures_mirror import Mirror

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).parent / "uv"  # from the lint extra (requirements/dev.txt)


def test_uv_tool_install_from_a_clean_clone(tmp_path: Path, mirror: Mirror) -> None:
    assert shutil.which("git"), "git is needed to clone the repository"
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "--quiet", "--depth", "1", f"file://{REPO}", str(clone)],
        check=True,
        timeout=120,
    )
    tools, bin_dir = tmp_path / "tools", tmp_path / "bin"
    env = {
        **os.environ,
        "UV_TOOL_DIR": str(tools),
        "UV_TOOL_BIN_DIR": str(bin_dir),
        "UV_CACHE_DIR": str(Path.home() / ".cache" / "uv"),  # the test env moved XDG's
        "UV_PYTHON_DOWNLOADS": "never",
    }
    installed = subprocess.run(
        [str(UV), "tool", "install", "--python", sys.executable, str(clone)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=1200,
    )
    assert installed.returncode == 0, installed.stderr
    assert "Installed 1 executable: taxi-cli" in installed.stderr

    taxi_cli = bin_dir / "taxi-cli"
    elsewhere = tmp_path / "elsewhere"  # not the clone: nothing importable from the cwd
    elsewhere.mkdir()
    user_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    version = subprocess.run(
        ["taxi-cli", "--version"], capture_output=True, text=True, env=user_env, cwd=elsewhere
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("taxi-cli 0.1.0\n")

    mirror.add_month("green", "2020-04", rows=50)
    extracted = subprocess.run(
        [str(taxi_cli), "extract", "green", "2020-04", "--json"],
        capture_output=True,
        text=True,
        env=user_env,
        cwd=elsewhere,
        timeout=300,
    )
    assert extracted.returncode == 0, extracted.stderr
    assert json.loads(extracted.stdout)  # a JSON report on stdout
    landed = Path(os.environ["TAXI_DATA_DIR"]) / "green" / "green_tripdata_2020-04.csv.gz"
    with gzip.open(landed, "rt") as fh:
        assert sum(1 for _ in fh) == 1 + 50  # the header and the served rows, verified

    tool_python = tools / "taxi-cli" / "bin" / "python"
    probe = (
        "import taxi_cli.postgres._fastcopy as m, taxi_cli; print(m.__file__, taxi_cli.__file__)"
    )
    where = subprocess.run(
        [str(tool_python), "-c", probe], capture_output=True, text=True, cwd=elsewhere
    )
    assert where.returncode == 0, where.stderr
    assert all(str(tools) in path for path in where.stdout.split())


def test_make_run_ends_by_saying_how_to_reach_the_tool() -> None:
    recipe = subprocess.run(
        ["make", "--no-print-directory", "--dry-run", "--always-make", "run"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")},
        timeout=60,
    )
    assert recipe.returncode == 0, recipe.stderr
    last = recipe.stdout.strip().splitlines()[-1]
    assert last.startswith("echo ")  # after the demo, the last thing `make run` does
    assert ".venv/bin/taxi-cli --help" in last and "source .venv/bin/activate" in last


def test_the_readme_says_how_to_reach_the_tool() -> None:
    readme = (REPO / "README.md").read_text()
    quick_start = readme[readme.index("## Quick start") : readme.index("## Commands")]
    for words in (
        "source .venv/bin/activate",
        ".venv/bin/taxi-cli --help",
        "uv tool install .",
        "pipx install .",
        "taxi-cli --install-completion",
        "make test",
    ):
        assert words in quick_start, words
    # in the order a new user needs them
    steps = ("make run", "source .venv", "uv tool", "**First commands.**", "**The tests.**")
    order = [quick_start.index(w) for w in steps]
    assert order == sorted(order)


def test_the_wheel_builds_without_setuptools_warnings_and_an_spdx_license(
    tmp_path: Path,
) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    backend = [line for line in built.stderr.splitlines() if "Warning" in line]
    assert backend == [], "\n".join(backend)
    (wheel,) = tmp_path.glob("taxi_cli-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        meta = zf.read("taxi_cli-0.1.0.dist-info/METADATA").decode()
        names = zf.namelist()
    assert "License-Expression: MIT" in meta.splitlines()
    assert any(n.startswith("taxi_cli/postgres/_fastcopy.") and n.endswith(".so") for n in names)
