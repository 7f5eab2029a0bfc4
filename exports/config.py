"""Export settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ExportConfig:
    """How a checkpoint becomes a bundle, and what it must pass on the way."""

    opset: int = 18  # ONNX opset of model.onnx
    parity_sequences: int = 1000  # random sequences compared between torch and onnxruntime
    parity_max_batch: int = 32  # batch sizes drawn from 1..this
    logit_tolerance: float = 1e-4  # max |onnxruntime - torch| on any logit
    batch_independence_tolerance: float = 1e-5  # a sequence alone vs padded among batch-mates
    embedding_dims: int = 8  # PCA components kept for the reduced embedding
    quantize: bool = False  # also write model.int8.onnx (dynamic int8 quantisation)
    threads: int = 2  # onnxruntime and torch threads during export checks
    seed: int = 0  # draws the parity sequences

    def __post_init__(self) -> None:
        if self.parity_sequences < 1 or self.parity_max_batch < 1 or self.embedding_dims < 1:
            raise ValueError("parity_sequences, parity_max_batch and embedding_dims must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)
