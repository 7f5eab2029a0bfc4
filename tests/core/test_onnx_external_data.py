"""A bundle's model.onnx is self-contained: external data is refused wherever a tensor sits,
in the graph or in a local function."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import set_external_data

from shiftwatch.bundle import BundleError, inspect_onnx

pytestmark = pytest.mark.unit

LABELS = ["a", "b", "c"]


def function_model(external: bool) -> onnx.ModelProto:
    """logits = Scores(attention_mask), where the local function Scores multiplies the mask's
    sum by a constant [1, 3] tensor held in the function's own Constant node."""
    weights = numpy_helper.from_array(np.ones((1, 3), dtype=np.float32), "weights")
    if external:
        set_external_data(weights, location="weights.bin")
        weights.data_location = TensorProto.EXTERNAL
        weights.ClearField("raw_data")
    scores = helper.make_function(
        "local",
        "Scores",
        ["mask"],
        ["scores"],
        [
            helper.make_node("Constant", [], ["w"], value=weights),
            helper.make_node("Cast", ["mask"], ["m"], to=TensorProto.FLOAT),
            helper.make_node("ReduceSum", ["m"], ["total"], keepdims=1),
            helper.make_node("Mul", ["total", "w"], ["scores"]),
        ],
        [helper.make_opsetid("", 13)],
    )
    dims = ["batch", "seq"]
    graph = helper.make_graph(
        [helper.make_node("Scores", ["attention_mask"], ["logits"], domain="local")],
        "function-model",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, dims),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, dims),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("local", 1)]
    return helper.make_model(graph, opset_imports=opsets, functions=[scores])


def test_a_model_whose_local_function_holds_its_tensor_inline_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    onnx.save(function_model(external=False), str(path))
    assert inspect_onnx(path, LABELS, None) == (["input_ids", "attention_mask"], 13)


def test_external_data_in_a_local_function_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    onnx.save(function_model(external=True), str(path))
    with pytest.raises(BundleError, match=r"external data files \['weights.bin'\]"):
        inspect_onnx(path, LABELS, None)
