"""Dynamic int8 quantisation and its measured cost in accuracy."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.shape_inference import quant_pre_process

from shiftwatch.inference import OnnxClassifier

log = logging.getLogger(__name__)


def quantize_int8(model_path: Path, out_path: Path) -> None:
    """Weights of MatMul/Gemm to int8, activations quantised on the fly (dynamic)."""
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Shape inference and graph clean-up first, as onnxruntime recommends.
        quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(
            str(prepared),
            str(out_path),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
        )


def accuracy_deltas(
    fp32: OnnxClassifier,
    int8: OnnxClassifier,
    eval_sets: dict[str, tuple[list[list[int]], np.ndarray]],
) -> dict:
    """Accuracy of fp32 and int8 and their difference (points) on each evaluation set."""
    result = {}
    for name, (ids, labels) in eval_sets.items():
        pred32 = fp32.predict(ids)[0].argmax(axis=1)
        pred8 = int8.predict(ids)[0].argmax(axis=1)
        acc32, acc8 = float((pred32 == labels).mean()), float((pred8 == labels).mean())
        result[name] = {
            "fp32_accuracy": acc32,
            "int8_accuracy": acc8,
            "delta_points": 100 * (acc8 - acc32),
            "argmax_agreement": float((pred32 == pred8).mean()),
        }
        log.info("int8 on %s: %s", name, result[name])
    return result
