"""The container tests' shared fixtures: the images must exist (`make test-containers` builds
them), and what the tests leave to look at (logs, the report's screenshot) is kept."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.containers.engine import DEPLOY, ENGINE, IMAGE, MONITOR_IMAGE, engine
from tests.servers import ROOT


@pytest.fixture(scope="session", autouse=True)
def images_built() -> None:
    for image in (IMAGE, MONITOR_IMAGE):
        listed = engine("image", "ls", "--format", "{{.Repository}}:{{.Tag}}")
        if not any(line.split("/")[-1] == image for line in listed.split()):
            pytest.fail(f"{ENGINE} has no image {image}: run `make test-containers` (it builds it)")


@pytest.fixture(scope="session")
def containers_artifacts() -> Path:
    """artifacts/test-containers/: container logs and the report's screenshot, kept."""
    path = Path(
        os.environ.get("SHIFTWATCH_CONTAINER_ARTIFACTS", ROOT / "artifacts" / "test-containers")
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The compose files' secrets, written by deploy/secrets.sh as a user would, into a folder
    of the tests' own (the compose files read SHIFTWATCH_SECRETS_DIR)."""
    folder = tmp_path_factory.mktemp("deploy") / "secrets"
    subprocess.run([str(DEPLOY / "secrets.sh"), str(folder)], check=True, capture_output=True)
    return folder


@pytest.fixture(scope="session")
def feedback_token(secrets_dir: Path) -> str:
    return (secrets_dir / "feedback_token").read_text().strip()
