"""One model store: the CLI and the Makefile use the same BentoML home by default."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.cli import ENVIRONMENT_DEFAULTS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.unit
def test_makefile_and_cli_default_to_the_same_store() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^export BENTOML_HOME \?= \$\(CURDIR\)/artifacts/bentoml$", makefile, re.M)
    assert ENVIRONMENT_DEFAULTS["BENTOML_HOME"] == "artifacts/bentoml"


@pytest.mark.integration
def test_serve_by_hand_looks_in_the_projects_store_and_says_what_is_there(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BENTOML_HOME"} | {"COLUMNS": "500"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestration",
            "serve",
            "--primary",
            "sentiment-v3",
            "--shadows",
            "",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    message = result.stderr
    assert "model 'sentiment-v3' (sentiment-v3:latest) is not in the BentoML model store" in message
    assert f"BENTOML_HOME={tmp_path / 'artifacts' / 'bentoml'}" in message
    assert "shiftwatch bundles there: none" in message
