"""Every venv installs the versions its constraints file pins (``make lock`` writes them; the
Makefile installs with ``-c``), so a fresh clone gets the packages CI passed with, not whatever
was released since. A requirement added without ``make lock`` fails here, not on a fresh machine
months later; so does a venv built without its constraints, once the index moves on."""

from __future__ import annotations

import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "micrometrics-connector"


def pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a constraints file, by canonical name."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} pins no version"
            found[canonicalize_name(name)] = version
    return found


def installed(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def pulled_in(extras: set[str]) -> dict[str, str]:
    """The distributions the project's requirements (with ``extras``) pull in, transitively,
    as installed in this interpreter's environment: name -> version. Strays a developer
    installed by hand are not among them."""
    found: dict[str, str] = {}
    todo = [(PROJECT, frozenset(extras))]
    seen = set(todo)
    while todo:
        name, wanted = todo.pop()
        dist = installed(name)
        assert dist is not None, f"{name} is required but not installed"
        for text in dist.requires or []:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker and not any(marker.evaluate({"extra": extra}) for extra in wanted | {""}):
                continue
            child = installed(requirement.name)
            assert child is not None, f"{requirement.name} (for {name}) is not installed"
            found[canonicalize_name(requirement.name)] = child.version
            step = (requirement.name, frozenset(requirement.extras))
            if step not in seen:
                seen.add(step)
                todo.append(step)
    return found


def unpinned(extras: set[str]) -> list[str]:
    locked = pins(ROOT / "constraints.txt")
    return sorted(f"{name} {version} (constraints.txt: {locked.get(name, 'none')})"
                  for name, version in pulled_in(extras).items()
                  if locked.get(name) != version)


def test_the_dev_venv_has_the_pinned_version_of_every_package_it_needs():
    assert unpinned({"dev"}) == []


@pytest.mark.warehouses
def test_the_warehouse_clients_have_their_pinned_versions():
    assert unpinned({"dev", "warehouses"}) == []


def test_the_constraints_agree_with_the_projects_own_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + [
        text for extra in project["optional-dependencies"].values() for text in extra]
    locked = pins(ROOT / "constraints.txt")
    for text in wanted:
        requirement = Requirement(text)
        assert locked.get(canonicalize_name(requirement.name), "none") in requirement.specifier, (
            f"{text} but constraints.txt pins {locked.get(canonicalize_name(requirement.name))}:"
            " run `make lock`")


@pytest.mark.warehouses
@pytest.mark.parametrize("venv, constraints", [
    (".venv-fakesnow", "tests/emulators/constraints-fakesnow.txt"),
    (".venv-bqemulator", "tests/emulators/constraints-bqemulator.txt"),
    (".venv-airflow", "deploy/airflow/constraints.txt"),
])
def test_each_tool_venv_is_exactly_its_constraints(venv, constraints):
    """These venvs hold nothing but their requirements (the Makefile builds them afresh)."""
    frozen = subprocess.run(
        [str(ROOT / venv / "bin" / "pip"), "freeze", "--all", "--exclude-editable"],
        capture_output=True, text=True, check=True).stdout
    have = {canonicalize_name(name): version for name, _, version in
            (line.partition("==") for line in frozen.splitlines()) if name != "pip"}
    assert have == pins(ROOT / constraints)
