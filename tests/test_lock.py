"""The lock files (requirements/*.txt, written by `make lock`) match pyproject.toml.

Every dependency pyproject.toml declares is pinned, within its range, with hashes; the
runtime lock (the container image's) carries no test or lint tool; and this venv, built
by `make install`, holds exactly the pinned versions.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+)(?: ; (.+?))? \\$")


def _pins(name: str) -> dict[str, list[tuple[Version, Marker | None]]]:
    """{package: [(version, marker)]}, and every pin is followed by its hashes."""
    lines = (REPO / "requirements" / name).read_text().splitlines()
    pins: dict[str, list[tuple[Version, Marker | None]]] = {}
    for i, line in enumerate(lines):
        found = PIN.match(line)
        if found:
            assert lines[i + 1].strip().startswith("--hash=sha256:"), f"{name}: {line}"
            marker = Marker(found.group(3)) if found.group(3) else None
            pins.setdefault(canonicalize_name(found.group(1)), []).append(
                (Version(found.group(2)), marker)
            )
    assert pins, f"{name} pins nothing"
    return pins


def _here(pins: list[tuple[Version, Marker | None]]) -> Version:
    (version,) = [v for v, marker in pins if marker is None or marker.evaluate()]
    return version


def _declared(*extras: str) -> list[Requirement]:
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in PROJECT["optional-dependencies"][extra]]
    return reqs


@pytest.mark.parametrize(("lock", "extras"), [("dev.txt", ("test", "lint")), ("runtime.txt", ())])
def test_every_declared_dependency_is_pinned_within_its_range(
    lock: str, extras: tuple[str, ...]
) -> None:
    pins = _pins(lock)
    for req in _declared(*extras):
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} is not in requirements/{lock}: run `make lock`"
        version = _here(pins[name])
        assert req.specifier.contains(version, prereleases=True), (
            f"requirements/{lock} pins {name}=={version}, outside {req}: run `make lock`"
        )


def test_the_runtime_lock_has_no_test_or_lint_tools() -> None:
    runtime = _pins("runtime.txt")
    for req in _declared("test", "lint"):
        if canonicalize_name(req.name) not in {canonicalize_name(r.name) for r in _declared()}:
            assert canonicalize_name(req.name) not in runtime, req.name


def test_this_venv_holds_the_locked_versions() -> None:
    for name, pins in _pins("dev.txt").items():
        if not any(marker is None or marker.evaluate() for _, marker in pins):
            continue  # not for this platform or Python
        assert Version(metadata.version(name)) == _here(pins), name
