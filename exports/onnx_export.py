"""torch -> ONNX with torch's current (dynamo) exporter, then parity against torch."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from shiftwatch.encoding import pad_batch
from shiftwatch.inference import INPUT_NAMES, OUTPUT_NAMES, OnnxClassifier
from training.model import SequenceClassifier

log = logging.getLogger(__name__)
# What each encoder layer's attention must export to (training.model.SelfAttention):
# onnxruntime's fused kernel; a Softmax in the graph would mean it fell apart into small ops.
ATTENTION_OP = ("com.microsoft", "MultiHeadAttention")


class ParityError(RuntimeError):
    """onnxruntime disagrees with torch beyond the stated tolerances."""


def export_onnx(model: SequenceClassifier, path: Path, opset: int) -> None:
    """Export with dynamic batch and sequence axes and check the result.

    Output names `logits` and `pooled` are not internal value names of the graph
    (a clash makes the dynamo exporter write an invalid model). Each layer's attention
    must come out as one onnxruntime MultiHeadAttention node.
    """
    model.eval()
    # The exporter warns at length about optional torchvision ops this model never uses.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    example = torch.randint(2, model.config.vocab_size, (2, 16))
    batch = torch.export.Dim("batch", min=1, max=65536)
    seq = torch.export.Dim("seq", min=1, max=model.config.max_positions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter
        torch.onnx.export(
            model,
            (example, torch.ones_like(example)),
            str(path),
            dynamo=True,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            opset_version=opset,
            external_data=False,
            verbose=False,
        )
    exported = onnx.load(str(path))
    onnx.checker.check_model(exported, full_check=True)
    ops = [(node.domain, node.op_type) for node in exported.graph.node]
    fused, layers = ops.count(ATTENTION_OP), model.config.n_layers
    if fused != layers or ("", "Softmax") in ops:
        raise RuntimeError(
            f"expected {layers} fused {ATTENTION_OP[1]} nodes and no Softmax, got {fused} "
            f"and {ops.count(('', 'Softmax'))}"
        )


def _random_batches(
    rng: np.random.Generator, vocab_size: int, max_len: int, total: int, max_batch: int
):
    """Batches of random id sequences, lengths 1..max_len.

    The first batch pairs a full-length row with a 1-token row, whose padding then
    fills all but one position of the sequence.
    """
    drawn = 0
    while drawn < total:
        lengths = rng.integers(1, max_len + 1, size=int(rng.integers(1, max_batch + 1)))
        if drawn == 0:
            lengths = np.concatenate([[max_len, 1], lengths])[: max(len(lengths), 2)]
        yield [rng.integers(2, vocab_size, size=int(n)).tolist() for n in lengths]
        drawn += len(lengths)


@torch.no_grad()
def check_parity(
    model: SequenceClassifier,
    classifier: OnnxClassifier,
    sequences: int,
    max_batch: int,
    logit_tolerance: float,
    batch_independence_tolerance: float,
    seed: int,
) -> dict:
    """Compare onnxruntime with torch on random padded batches; raise ParityError on failure.

    Checks, over `sequences` random sequences in batches of 1..max_batch and lengths
    1..max_positions: max |logit difference|, argmax agreement, and that each
    sequence's onnxruntime logits alone equal its logits among padded batch-mates.
    """
    rng = np.random.default_rng(seed)
    max_len = model.config.max_positions
    max_diff, agree, independence, count, batches = 0.0, 0, 0.0, 0, 0
    for batch in _random_batches(rng, model.config.vocab_size, max_len, sequences, max_batch):
        input_ids, attention_mask = pad_batch(batch)
        ort_logits, _ = classifier.run(input_ids, attention_mask)
        torch_logits, _ = model(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
        torch_logits = torch_logits.numpy()
        max_diff = max(max_diff, float(np.abs(ort_logits - torch_logits).max()))
        agree += int((ort_logits.argmax(1) == torch_logits.argmax(1)).sum())
        count += len(batch)
        batches += 1
        for row in range(len(batch)):
            alone, _ = classifier.run(*pad_batch([batch[row]]))
            independence = max(independence, float(np.abs(alone[0] - ort_logits[row]).max()))
    result = {
        "sequences": count,
        "batches": batches,
        "max_abs_logit_diff": max_diff,
        "argmax_agreement": agree / count,
        "max_batch_independence_diff": independence,
        "logit_tolerance": logit_tolerance,
        "batch_independence_tolerance": batch_independence_tolerance,
        "lengths": [1, max_len],
        "passed": max_diff <= logit_tolerance
        and agree == count
        and independence <= batch_independence_tolerance,
    }
    log.info("parity: %s", result)
    if not result["passed"]:
        raise ParityError(f"onnxruntime vs torch parity failed: {result}")
    return result
