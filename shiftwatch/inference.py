"""onnxruntime sessions for exported classifiers (torch-free): export parity, benchmarks, serving.

Graph optimisation: ORT_ENABLE_EXTENDED. It adds onnxruntime's transformer fusions
(LayerNorm, GELU, MatMul+Add, attention patterns) on top of the basic constant
folding; ORT_ENABLE_ALL only adds layout transforms for convolutional (NCHWc)
kernels, which this model has none of, so it would cost start-up time for nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from shiftwatch.bundle import LOGITS, ModelBundle
from shiftwatch.encoding import pad_batch

# What shiftwatch's own export writes; an imported model declares its own in bundle.json.
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAMES = (LOGITS, "pooled")
GRAPH_OPTIMIZATION = "ORT_ENABLE_EXTENDED"


class SequenceTooLongError(ValueError):
    """A sequence longer than the model's hard positional limit."""


def execution_providers(prefer_gpu: bool = True) -> list[str]:
    """CUDA when onnxruntime-gpu and a GPU are present, else CPU."""
    available = ort.get_available_providers()
    if prefer_gpu and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def open_session(
    model_path: Path,
    intra_op_threads: int = 1,
    inter_op_threads: int = 1,
    prefer_gpu: bool = True,
    profile_prefix: Path | None = None,
) -> ort.InferenceSession:
    """An InferenceSession with explicit thread counts and the project's optimisation level.

    Thread counts are explicit so a container with a CPU quota is not oversubscribed.
    `profile_prefix`: turn on onnxruntime's profiler, writing its JSON there (benchmarks).
    """
    options = ort.SessionOptions()
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION)
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(model_path), options, providers=execution_providers(prefer_gpu))


class OnnxClassifier:
    """An exported classifier: padded batches in, logits and pooled vectors out.

    `token_type_ids`, when the graph takes it (BERT-style imports), is all zeros: one
    segment per sequence. Without an embedding output, `pooled` is None.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        max_positions: int,
        pad_id: int = 0,
        embedding_output: str | None = "pooled",
    ) -> None:
        self.session = session
        self.max_positions = max_positions
        self.pad_id = pad_id
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [LOGITS, *([embedding_output] if embedding_output else [])]

    @classmethod
    def from_bundle(
        cls,
        bundle: ModelBundle,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        prefer_gpu: bool = True,
        quantized: bool = False,
    ) -> OnnxClassifier:
        """A classifier over a bundle's model (or its int8 model), with the bundle's pad id
        and embedding output."""
        path = bundle.quantized_model_path if quantized else bundle.model_path
        if path is None:
            raise FileNotFoundError(f"model bundle {bundle.path} has no quantised model")
        session = open_session(path, intra_op_threads, inter_op_threads, prefer_gpu)
        return cls(
            session,
            bundle.meta.max_positions,
            bundle.tokenizer.pad_id,
            bundle.meta.embedding_output,
        )

    def run(
        self, input_ids: np.ndarray, attention_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """One `session.run` on a padded (B, T) batch; T above the limit is refused."""
        if input_ids.shape[1] > self.max_positions:
            raise SequenceTooLongError(
                f"sequence length {input_ids.shape[1]} exceeds the model's positional limit "
                f"{self.max_positions}"
            )
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        outputs = self.session.run(self.output_names, feed)
        return outputs[0], outputs[1] if len(outputs) > 1 else None

    def predict(
        self,
        sequences: list[list[int]],
        batch_size: int = 64,
        observe: Callable[[float, int], None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits and pooled vectors (None without an embedding output) for id sequences,
        batched by length, in input order.

        Args:
            observe: called after each session.run with (seconds, sequences in it).
        """
        order = np.argsort([len(s) for s in sequences], kind="stable")
        logits: np.ndarray | None = None
        pooled: np.ndarray | None = None
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            started = time.perf_counter()
            batch = pad_batch([sequences[r] for r in rows], self.pad_id)
            batch_logits, batch_pooled = self.run(*batch)
            if observe is not None:
                observe(time.perf_counter() - started, len(rows))
            if logits is None:
                logits = np.empty((len(sequences), batch_logits.shape[1]), dtype=np.float32)
                if batch_pooled is not None:
                    pooled = np.empty((len(sequences), batch_pooled.shape[1]), dtype=np.float32)
            logits[rows] = batch_logits
            if pooled is not None:
                pooled[rows] = batch_pooled
        if logits is None:
            logits = np.empty((0, 0), dtype=np.float32)
        return logits, pooled
