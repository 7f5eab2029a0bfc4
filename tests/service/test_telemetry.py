"""No outbound calls at run time: onnxruntime's own telemetry (on by default on Linux since
1.29: a device id written under $HOME, then uploads) is off in the images' environment.

The guard of tests/reliability/test_no_network.py patches Python's sockets, which onnxruntime's
native uploader never uses; the device id it writes at start-up is the visible trace. Every
session here runs in a network namespace of its own (`unshare --net`, root), so the control
run, telemetry on, has nowhere to send anything."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import yaml
from onnx import TensorProto, helper

from tests.servers import ROOT

DEVICE_ID = Path(".cache") / "Microsoft" / "DeveloperTools" / ".onnxruntime" / "deviceid"


def image_env(bentofile: Path) -> dict[str, str]:
    return {e["name"]: str(e["value"]) for e in yaml.safe_load(bentofile.read_text())["envs"]}


def start_session(model: Path, home: Path, extra: dict[str, str]) -> bool:
    """Import onnxruntime and open a session in a fresh process with this HOME; whether
    onnxruntime wrote its telemetry device id there."""
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    code = f"import onnxruntime as ort; ort.InferenceSession({str(model)!r})"
    subprocess.run(
        ["unshare", "--net", sys.executable, "-c", code],
        env={**env, **extra, "HOME": str(home)},
        check=True,
    )
    return (home / DEVICE_ID).exists()


BENTOFILES = (ROOT / "bentofile.yaml", ROOT / "deploy" / "bentofile.gpu.yaml")


@pytest.mark.unit
def test_both_images_set_onnxruntime_telemetry_off() -> None:
    for bentofile in BENTOFILES:
        assert image_env(bentofile)["ORT_DISABLE_TELEMETRY"] == "1", bentofile.name


@pytest.mark.integration
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare"
)
def test_onnxruntime_writes_no_device_id_in_either_images_environment(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    # The control: without the setting, onnxruntime writes its device id on some machines and
    # not on others (seen: a CI machine where it wrote none). Where it writes none, absence
    # below would prove nothing.
    if not start_session(model, tmp_path / "default-home", {}):
        pytest.skip("onnxruntime writes no device id here even with telemetry on")
    for bentofile in BENTOFILES:
        home = tmp_path / f"home-{bentofile.stem}"
        assert not start_session(model, home, image_env(bentofile)), bentofile.name
