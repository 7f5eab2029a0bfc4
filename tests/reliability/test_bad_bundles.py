"""A bad model bundle in the store stops `bentoml serve` at start-up: one clear line naming
the model and the problem, a non-zero exit, no worker crash loop."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
import yaml

from shiftwatch.bundle import seal_bundle
from shiftwatch.model_store import MANIFEST_SHA256
from shiftwatch.tokenizer import TextTokenizer
from tests.servers import ROOT, TINY_LIMITS, TINY_NAMES, free_port

pytestmark = [pytest.mark.slow, pytest.mark.behaviour]
# Start-up of a bad store takes ~2 s (the check runs before any worker); a good store needs
# ~15 s to become ready. 180 s only bounds a regression (a crash loop never exits).
STARTUP_LIMIT_SECONDS = 180


def bundle_dir(home: Path, variant: str) -> Path:
    models = home / "models" / TINY_NAMES[variant]
    return models / (models / "latest").read_text().strip()


def reseal(folder: Path) -> None:
    """Rewrite the manifest and the store's record of it, as registering the changed files
    anew would: the check that follows is then the file's own, past the manifest."""
    info = yaml.safe_load((folder / "model.yaml").read_text())
    info["metadata"][MANIFEST_SHA256] = seal_bundle(folder)
    (folder / "model.yaml").write_text(yaml.safe_dump(info, sort_keys=False))


def remove_tokenizer(home: Path) -> None:
    (bundle_dir(home, "research") / "tokenizer.json").unlink()


def garble_onnx(home: Path) -> None:
    (bundle_dir(home, "baseline") / "model.onnx").write_bytes(b"\x08\x07garbage" * 512)
    reseal(bundle_dir(home, "baseline"))


def unknown_operator(home: Path) -> None:
    """A model.onnx that parses and keeps the contract's inputs and outputs, but whose graph
    onnxruntime cannot load: only opening a session finds it."""
    path = bundle_dir(home, "no_pe") / "model.onnx"
    model = onnx.load(str(path))
    model.graph.node[0].op_type = "NoSuchOperator"
    onnx.save(model, str(path))
    reseal(path.parent)


def swap_tokens(home: Path) -> None:
    """A valid tokenizer.json that is not the model's: two token ids swapped."""
    path = bundle_dir(home, "research") / "tokenizer.json"
    raw = json.loads(path.read_text())
    vocab = raw["model"]["vocab"]
    first, second = (t for t, i in vocab.items() if i in (2, 3))
    vocab[first], vocab[second] = vocab[second], vocab[first]
    TextTokenizer(json.dumps(raw)).save(path)
    reseal(path.parent)


def change_reference(home: Path) -> Path:
    """One byte of reference.parquet changed: a file the service itself never parses."""
    path = bundle_dir(home, "research") / "reference.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return path.parent


def rewrite_manifest(home: Path) -> None:
    """A changed file and a manifest rewritten to match: only the store's record differs."""
    seal_bundle(change_reference(home))


def drop_manifest_hash(home: Path) -> None:
    """A version registered before bundles had manifests: no hash in the store's metadata."""
    path = bundle_dir(home, "baseline") / "model.yaml"
    info = yaml.safe_load(path.read_text())
    del info["metadata"][MANIFEST_SHA256]
    path.write_text(yaml.safe_dump(info, sort_keys=False))


def drop_model(home: Path) -> None:
    shutil.rmtree(home / "models" / TINY_NAMES["no_pe"])


CASES: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    # case: (how the store is broken, fragments of the one message)
    "missing_file": (remove_tokenizer, ["acme-alibi.v2", "is missing tokenizer.json"]),
    "corrupt_onnx": (garble_onnx, ["acme-base", "not a readable ONNX model"]),
    "graph_onnxruntime_rejects": (unknown_operator, ["acme_nope", "NoSuchOperator"]),
    "tokenizer_mismatch": (swap_tokens, ["acme-alibi.v2", "tokenizer hash mismatch"]),
    "changed_file": (change_reference, ["acme-alibi.v2", "reference.parquet has sha256"]),
    "manifest_rewritten": (rewrite_manifest, ["acme-alibi.v2", "model store recorded"]),
    "no_manifest_hash": (drop_manifest_hash, ["acme-base", "records no manifest_sha256"]),
    # BentoML's own check, before ours: the reference resolves to nothing.
    "model_not_in_store": (drop_model, ["acme_nope:latest could not be found"]),
}


def serve(home: Path, work: Path, settings: dict[str, str | None] | None = None) -> tuple[int, str]:
    """`bentoml serve` over the store at `home`; (exit code, output). A run that does not
    exit in time is killed (its whole process group) and reported as such. `settings`:
    variables on top (None removes one)."""
    env = {
        **os.environ,
        **TINY_LIMITS,
        "BENTOML_HOME": str(home),
        "SHIFTWATCH_EVENT_LOG_DIR": str(work / "events"),
        "SHIFTWATCH_FEEDBACK_OPEN": "true",  # loopback: the bundle is what is under test
    }
    for name, value in (settings or {}).items():
        env.pop(name, None)
        if value is not None:
            env[name] = value
    args = ["bentoml", "serve", "service.service:Shiftwatch", "--host", "127.0.0.1"]
    process = subprocess.Popen(
        [sys.executable, "-m", *args, "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its workers, if any, die with it below
    )
    try:
        output, _ = process.communicate(timeout=STARTUP_LIMIT_SECONDS)
        return process.returncode, output
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return -1, f"did not exit in {STARTUP_LIMIT_SECONDS} s\n{output[-3000:]}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_bundle_stops_startup_with_one_message(
    case: str, tiny_store: dict, tmp_path: Path
) -> None:
    breaks, fragments = CASES[case]
    home = tmp_path / "bentoml"
    shutil.copytree(Path(os.environ["BENTOML_HOME"]) / "models", home / "models")
    breaks(home)

    code, output = serve(home, tmp_path)

    assert code not in (0, -1), output[-3000:]
    problem_lines = [
        line
        for line in output.splitlines()
        if "cannot start" in line or "could not be found" in line
    ]
    assert len(problem_lines) == 1, output[-3000:]  # one message, no respawn loop
    for fragment in fragments:
        assert fragment in problem_lines[0], problem_lines[0]
    assert "Traceback" not in output, output[-3000:]
