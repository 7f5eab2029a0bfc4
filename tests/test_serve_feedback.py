"""`shiftwatch serve`: an open /feedback only on loopback, never on an address others reach.

Run as a subprocess (the command ends in exec of `bentoml serve`); both cases stop before a
server starts: the feedback check, or the model-store check on an empty store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import free_port

pytestmark = pytest.mark.integration


def serve(tmp_path: Path, *args: str, **variables: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIFTWATCH_")}
    env |= {"COLUMNS": "500", "BENTOML_HOME": str(tmp_path / "empty-store"), **variables}
    command = [sys.executable, "-m", "orchestration", "serve", "--primary", "sentiment-v3"]
    return subprocess.run(
        [*command, "--shadows", "", "--port", str(free_port()), *args],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_serve_on_an_outside_address_needs_a_feedback_token(tmp_path: Path) -> None:
    result = serve(tmp_path, "--host", "0.0.0.0")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "/feedback: no token configured" in result.stderr
    assert "SHIFTWATCH_FEEDBACK_TOKEN" in result.stderr


@pytest.mark.parametrize(
    "args", [("--host", "127.0.0.1"), ("--host", "0.0.0.0")], ids=["loopback", "outside"]
)
def test_serve_with_a_token_or_on_loopback_goes_on_to_the_models(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    token = {} if args[1] == "127.0.0.1" else {"SHIFTWATCH_FEEDBACK_TOKEN": "t0k"}
    result = serve(tmp_path, *args, **token)
    # past the feedback check: the next one, the empty store, stops it
    assert result.returncode == 2, result.stdout + result.stderr
    assert "/feedback" not in result.stderr
    assert "is not in the BentoML model store" in result.stderr
