"""The model bundle: `artifacts/models/<variant>/`, its metadata, and a validating reader.

Exactly `model.onnx`, `bundle.json`, `vocab.json`, `reference.parquet`, plus
`model.int8.onnx` when quantised. Reading a bundle checks every file against
this contract so a bad bundle stops start-up with one clear message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shiftwatch.features import FEATURE_NAMES
from shiftwatch.inference import INPUT_NAMES, OUTPUT_NAMES
from shiftwatch.vocab import VocabError, Vocabulary

REQUIRED_FILES = ("model.onnx", "bundle.json", "vocab.json", "reference.parquet")
QUANTIZED_FILE = "model.int8.onnx"
STORE_FILES = ("model.yaml",)  # written by the BentoML model store beside a registered bundle
FORMAT_VERSION = 1
# ONNX TensorProto element types of the contract.
INT64, FLOAT32 = onnx.TensorProto.INT64, onnx.TensorProto.FLOAT


class BundleError(ValueError):
    """A model bundle that does not meet the contract; the message names the problem."""


class EmbeddingReduction(BaseModel):
    """A fixed PCA of the pooled vector, fitted on the validation set at export time."""

    method: str = "pca"
    mean: list[float]  # (d_model,)
    components: list[list[float]]  # (k, d_model), rows are principal directions
    explained_variance_ratio: list[float]  # (k,)

    def apply(self, pooled: np.ndarray) -> np.ndarray:
        """(B, d_model) pooled vectors -> (B, k) reduced embeddings."""
        return (pooled - np.asarray(self.mean, dtype=np.float32)) @ np.asarray(
            self.components, dtype=np.float32
        ).T


class BundleMeta(BaseModel):
    """bundle.json."""

    model_config = ConfigDict(extra="allow")

    format_version: int = FORMAT_VERSION
    variant: str
    labels: list[str] = Field(min_length=2)  # in logit order
    max_trained_length: int = Field(gt=0)  # longest training sequence
    max_positions: int = Field(gt=0)  # hard positional limit
    vocab_sha256: str
    vocab_size: int
    d_model: int
    opset: int
    graph_optimization: str
    training_metrics: dict[str, dict[str, float]]  # eval set -> accuracy, macro_f1, ece
    parity: dict
    quantization: dict | None = None
    embedding_reduction: EmbeddingReduction
    reference: dict  # rows, accuracy
    created_at: str
    git_commit: str
    run: dict  # where the checkpoint came from


def reference_columns(embedding_dims: int) -> list[str]:
    """Columns of reference.parquet (and of a prediction event's flat form)."""
    return [
        *FEATURE_NAMES,
        "predicted_label",
        "confidence",
        "entropy",
        "label",
        "domain",
        *(f"embedding_{i}" for i in range(embedding_dims)),
    ]


@dataclass(frozen=True)
class ModelBundle:
    """A validated bundle on disk."""

    path: Path
    meta: BundleMeta
    vocab: Vocabulary

    @property
    def model_path(self) -> Path:
        return self.path / "model.onnx"

    @property
    def quantized_model_path(self) -> Path | None:
        path = self.path / QUANTIZED_FILE
        return path if path.exists() else None

    def load_reference(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / "reference.parquet")


def _check_onnx_io(path: Path) -> None:
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends, no common base
        raise BundleError(f"{path}: not a readable ONNX model: {exc}") from exc
    graph = model.graph
    want = {"input_ids": INT64, "attention_mask": INT64, "logits": FLOAT32, "pooled": FLOAT32}
    for kind, values, names in (
        ("inputs", graph.input, INPUT_NAMES),
        ("outputs", graph.output, OUTPUT_NAMES),
    ):
        found = [v.name for v in values]
        if found != list(names):
            raise BundleError(f"{path}: ONNX {kind} are {found}, the contract is {list(names)}")
        for value in values:
            tensor = value.type.tensor_type
            if tensor.elem_type != want[value.name] or len(tensor.shape.dim) != 2:
                raise BundleError(
                    f"{path}: ONNX {kind[:-1]} '{value.name}' must be a rank-2 "
                    f"{onnx.TensorProto.DataType.Name(want[value.name]).lower()} tensor"
                )


def read_bundle(path: Path | str) -> ModelBundle:
    """Load and validate a bundle folder.

    Raises:
        BundleError: missing or extra file, bad JSON, bundle.json fields, vocabulary
            hash mismatch, reference columns, or ONNX inputs/outputs off-contract.
    """
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"model bundle {path} does not exist")
    present = {p.name for p in path.iterdir()}
    missing = [f for f in REQUIRED_FILES if f not in present]
    if missing:
        raise BundleError(f"model bundle {path} is missing {', '.join(missing)}")
    extra = sorted(present - set(REQUIRED_FILES) - {QUANTIZED_FILE, *STORE_FILES})
    if extra:
        raise BundleError(f"model bundle {path} has unexpected files: {', '.join(extra)}")
    try:
        meta = BundleMeta.model_validate(json.loads((path / "bundle.json").read_text()))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path / 'bundle.json'} is not valid JSON: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(map(str, first["loc"]))
        raise BundleError(f"{path / 'bundle.json'}: field '{field}': {first['msg']}") from exc
    try:
        vocab = Vocabulary.load(path / "vocab.json", expected_sha256=meta.vocab_sha256)
    except VocabError as exc:
        raise BundleError(str(exc)) from exc
    if len(vocab) != meta.vocab_size:
        raise BundleError(
            f"{path}: vocab.json has {len(vocab)} tokens, bundle.json says {meta.vocab_size}"
        )
    _check_onnx_io(path / "model.onnx")
    if QUANTIZED_FILE in present:
        _check_onnx_io(path / QUANTIZED_FILE)
    try:
        columns = pd.read_parquet(path / "reference.parquet").columns
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise BundleError(f"{path / 'reference.parquet'} cannot be read: {exc}") from exc
    expected = reference_columns(len(meta.embedding_reduction.components))
    absent = [c for c in expected if c not in columns]
    if absent:
        raise BundleError(f"{path / 'reference.parquet'} lacks columns {absent}")
    return ModelBundle(path, meta, vocab)
