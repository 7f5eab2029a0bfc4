"""`bentoml build` from this checkout: the Bento packs the models, a Dockerfile, and no torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bentoml
import pytest
import yaml

from tests.servers import TINY_LIMITS, TINY_NAMES

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_bentoml_build_packs_models_and_a_torch_free_environment(tiny_store: dict) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "--output", "tag"],
        cwd=ROOT,
        env={**os.environ, **TINY_LIMITS},  # the models to pack: the tiny ones, by their names
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    tag = result.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    name, version = tag.split(":")
    bento = Path(os.environ["BENTOML_HOME"]) / "bentos" / name / version
    manifest = yaml.safe_load((bento / "bento.yaml").read_text())
    # The service declares its models: BentoML lists them under the service, and copies them
    # into the container's build context (`make test-containers` runs the image).
    packed = {m["tag"] for service in manifest["services"] for m in service["models"]}
    # The service asks for :latest; other tests may register newer versions than tiny_store's.
    latest = {str(bentoml.models.get(f"{name}:latest").tag) for name in TINY_NAMES.values()}
    assert packed == latest
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile and "ENTRYPOINT" in dockerfile
    # Lean: no system-package step (BentoML's distro default adds a compiler and git), and
    # the data folder the volumes mount on made the Bento user's (bento.Dockerfile.j2).
    assert "apt-get" not in dockerfile and "build-essential" not in dockerfile
    assert "chown -R bentoml:bentoml /var/lib/shiftwatch" in dockerfile
    requirements = (bento / "env" / "python" / "requirements.txt").read_text().lower().splitlines()
    assert any(line.startswith("onnxruntime") for line in requirements)
    # torch and its CUDA wheels stay out (nvidia-ml-py, a small BentoML dependency, is fine).
    assert not any(line.startswith(("torch", "nvidia-cu")) for line in requirements)
    # The committed lock, every version pinned (deploy/python/serving.lock.txt), no analytics.
    assert not any(
        line.startswith(("pandas", "pyarrow", "evidently", "scipy")) for line in requirements
    )
    pinned = [line for line in requirements if line and not line.startswith(("#", " "))]
    assert pinned and all("==" in line for line in pinned), pinned
    sources = {p.relative_to(bento / "src").as_posix() for p in (bento / "src").rglob("*.py")}
    assert "service/service.py" in sources and "shiftwatch/bundle.py" in sources
    assert "monitoring/__main__.py" in sources  # what the monitor image runs
    orchestration = (
        "orchestration/cli/",
        "orchestration/replay/",
        "shiftwatch/data/",
        "shiftwatch/__main__",
    )
    assert not any(
        s.startswith(("training/", "exports/", "tests/", *orchestration)) for s in sources
    )
    envs = {e["name"]: e["value"] for e in manifest["envs"]}
    assert envs["BENTOML_DO_NOT_TRACK"] == "true"
    # The image serves the models it packs, unless its environment says otherwise.
    assert envs["SHIFTWATCH_PRIMARY_MODEL"] == TINY_NAMES["baseline"]
    assert envs["SHIFTWATCH_SHADOW_MODELS"] == f"{TINY_NAMES['research']},{TINY_NAMES['no_pe']}"
    assert f"ARG SHIFTWATCH_PRIMARY_MODEL={TINY_NAMES['baseline']}\n" in dockerfile
    assert "ENV SHIFTWATCH_PRIMARY_MODEL=$SHIFTWATCH_PRIMARY_MODEL" in dockerfile
