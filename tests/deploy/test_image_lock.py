"""The images' pinned requirements (deploy/python/): complete, within the declared ranges, used
by both bentofiles, and equal to what the tests run on."""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, version

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.tools import DEPLOY
from tests.servers import ROOT

pytestmark = pytest.mark.unit

PYTHON = DEPLOY / "python"
IMAGES = {  # bentofile -> (ranges, lock)
    ROOT / "bentofile.yaml": (PYTHON / "serving.in", PYTHON / "serving.lock.txt"),
    DEPLOY / "bentofile.gpu.yaml": (PYTHON / "serving-gpu.in", PYTHON / "serving-gpu.lock.txt"),
}
MONITOR_LOCK = PYTHON / "monitor.lock.txt"  # the monitor image: the serving lock plus analytics


def requirements(path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def pins(lock) -> dict[str, str]:
    """Package -> pinned version; every requirement line of a lock must be `name==version`."""
    pinned = {}
    for req in requirements(lock):
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{lock.name}: {req} is not pinned"
        pinned[canonicalize_name(req.name)] = specs[0].version
    return pinned


def project_ranges() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["gpu"]
    return {canonicalize_name(r.name): str(r.specifier) for r in map(Requirement, declared)}


@pytest.mark.parametrize("bentofile", IMAGES, ids=lambda p: p.name)
def test_lock_pins_every_declared_package_within_its_range(bentofile) -> None:
    ranges, lock = IMAGES[bentofile]
    pinned = pins(lock)
    declared = project_ranges()
    for req in requirements(ranges):
        name = canonicalize_name(req.name)
        assert str(req.specifier) == declared[name], f"{ranges.name}: {req} differs from pyproject"
        assert name in pinned, f"{lock.name} lacks {name}: run `make lock`"
        assert req.specifier.contains(pinned[name]), (
            f"{lock.name}: {name}=={pinned[name]} not {req}"
        )
    assert "torch" not in pinned


@pytest.mark.parametrize("bentofile", IMAGES, ids=lambda p: p.name)
def test_bentofile_installs_the_lock_and_resolves_nothing(bentofile) -> None:
    python = yaml.safe_load(bentofile.read_text())["python"]
    assert ROOT / python["requirements_txt"] == IMAGES[bentofile][1]
    assert python["lock_packages"] is False
    assert "packages" not in python  # BentoML ignores `packages` next to requirements_txt


def test_the_tests_run_the_versions_the_image_ships() -> None:
    """`make setup` installs under the CPU lock; a drifted environment fails here, not in prod."""
    drifted = {}
    for name, pinned in pins(MONITOR_LOCK).items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            drifted[name] = (pinned, installed)
    assert not drifted, f"installed differs from the lock (pinned, installed): {drifted}"


def test_the_monitor_lock_extends_the_serving_lock_without_changing_it() -> None:
    """The monitor image installs monitor.lock.txt over the serving image's packages: every
    serving pin must be the monitor's too, or the install would swap the service's versions."""
    serving, monitor = pins(PYTHON / "serving.lock.txt"), pins(MONITOR_LOCK)
    changed = {n: (v, monitor.get(n)) for n, v in serving.items() if monitor.get(n) != v}
    assert not changed, f"serving pin -> monitor pin: {changed}; run `make lock`"
    own = [line for line in (PYTHON / "monitor.in").read_text().splitlines() if line[:1].isalpha()]
    declared = project_ranges()
    for req in map(Requirement, own):
        name = canonicalize_name(req.name)
        assert str(req.specifier) == declared[name]
        assert req.specifier.contains(monitor[name]), f"{name}=={monitor[name]} not {req}"


@pytest.mark.parametrize("bentofile", IMAGES, ids=lambda p: p.name)
def test_the_serving_locks_carry_no_analytics_stack(bentofile) -> None:
    pinned = pins(IMAGES[bentofile][1])
    assert not {"pandas", "pyarrow", "evidently", "scipy", "scikit-learn", "plotly"} & set(pinned)
