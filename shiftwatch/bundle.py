"""The model bundle: `artifacts/models/<name>/`, its metadata, and a validating reader.

Exactly `model.onnx`, `bundle.json`, `tokenizer.json`, `reference.parquet`, plus
`model.int8.onnx` when quantised, and `manifest.json` hashing them all
(`shiftwatch/manifest.py`). The same contract holds for a model trained here
(`shiftwatch export`) and one trained elsewhere (`shiftwatch import`). Reading a
bundle first checks every file against the manifest, then each file against the
contract, so a bad bundle stops start-up with one clear message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx.external_data_helper import uses_external_data
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shiftwatch.features import FEATURE_NAMES
from shiftwatch.manifest import ManifestError, verify_manifest, write_manifest
from shiftwatch.names import validate_model_name
from shiftwatch.tokenizer import TextTokenizer, TokenizerError

REQUIRED_FILES = ("model.onnx", "bundle.json", "tokenizer.json", "reference.parquet")
QUANTIZED_FILE = "model.int8.onnx"
STORE_FILES = ("model.yaml",)  # written by the BentoML model store beside a registered bundle
FORMAT_VERSION = 2  # 1: vocab.json and the three study names only
# ONNX inputs a bundle may declare (any order); the first two are required.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
REQUIRED_INPUTS = INPUT_NAMES[:2]
LOGITS = "logits"
# ONNX TensorProto element types of the contract.
INT64, FLOAT32 = onnx.TensorProto.INT64, onnx.TensorProto.FLOAT


class BundleError(ValueError):
    """A model bundle that does not meet the contract; the message names the problem."""


class EmbeddingReduction(BaseModel):
    """A fixed PCA of the pooled vector, fitted on the reference rows at export time."""

    method: str = "pca"
    mean: list[float]  # (d_model,)
    components: list[list[float]]  # (k, d_model), rows are principal directions
    explained_variance_ratio: list[float]  # (k,)

    def apply(self, pooled: np.ndarray) -> np.ndarray:
        """(B, d_model) pooled vectors -> (B, k) reduced embeddings."""
        return (pooled - np.asarray(self.mean, dtype=np.float32)) @ np.asarray(
            self.components, dtype=np.float32
        ).T

    @property
    def dims(self) -> int:
        return len(self.components)


class BundleMeta(BaseModel):
    """bundle.json."""

    model_config = ConfigDict(extra="allow")

    format_version: Literal[2] = FORMAT_VERSION
    name: str  # the deployable name: bundle folder, store tag, metric label
    architecture: str  # the training preset (baseline, research, no_pe) or "imported"
    labels: list[str] = Field(min_length=2)  # in logit order
    max_trained_length: int = Field(gt=0)  # longest training sequence, in token ids
    max_positions: int = Field(gt=0)  # hard positional limit; longer input is truncated
    tokenizer_sha256: str  # of tokenizer.json's exact bytes
    vocab_size: int = Field(gt=0)
    inputs: list[str]  # ONNX input names, in order
    embedding_output: str | None  # ONNX output with the pooled vector; None: no embedding drift
    opset: int | None
    graph_optimization: str
    training_metrics: dict[str, dict[str, float]]  # eval set -> accuracy, macro_f1, ece
    parity: dict | None  # torch vs onnxruntime at export; None for an imported model
    quantization: dict | None = None
    embedding_reduction: EmbeddingReduction | None  # None exactly when embedding_output is
    reference: dict  # rows, accuracy, where the rows came from
    created_at: str
    git_commit: str
    source: dict  # the training run, or the imported files

    @property
    def embedding_dims(self) -> int:
        """Columns of the reduced embedding (0 without an embedding output)."""
        return 0 if self.embedding_reduction is None else self.embedding_reduction.dims

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return validate_model_name(value)

    @field_validator("labels")
    @classmethod
    def _distinct_labels(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("labels must be distinct")
        return value

    @field_validator("inputs")
    @classmethod
    def _known_inputs(cls, value: list[str]) -> list[str]:
        names = set(value)
        if len(names) != len(value) or not set(INPUT_NAMES[:2]) <= names <= set(INPUT_NAMES):
            raise ValueError(f"inputs must be {list(INPUT_NAMES[:2])}, optionally token_type_ids")
        return value


def reference_columns(embedding_dims: int, classes: int = 0) -> list[str]:
    """Columns of reference.parquet (and of a prediction event's flat form).

    With `classes`, also the calibration columns every export writes: `sequence_id` (a hash
    of the text, so references of models built on the same rows can be joined) and one
    `probability_<i>` per label, in the bundle's label order. Bundles exported before these
    columns still load; their label-free estimates are uncalibrated (see the monitor).
    """
    return [
        *FEATURE_NAMES,
        "predicted_label",
        "confidence",
        "entropy",
        "label",
        "domain",
        *(f"embedding_{i}" for i in range(embedding_dims)),
        *(["sequence_id", *probability_columns(classes)] if classes else []),
    ]


def probability_columns(classes: int) -> list[str]:
    return [f"probability_{i}" for i in range(classes)]


@dataclass(frozen=True)
class ModelBundle:
    """A validated bundle on disk."""

    path: Path
    meta: BundleMeta
    tokenizer: TextTokenizer  # truncating at meta.max_positions
    manifest_sha256: str  # of manifest.json, checked with every file it lists when read

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def model_path(self) -> Path:
        return self.path / "model.onnx"

    @property
    def quantized_model_path(self) -> Path | None:
        path = self.path / QUANTIZED_FILE
        return path if path.exists() else None


def _external_locations(graph: onnx.GraphProto) -> set[str]:
    """Files named by tensors of `graph` (and its subgraphs) stored as external data."""
    tensors = [*graph.initializer]
    tensors += [t for s in graph.sparse_initializer for t in (s.values, s.indices)]
    return _tensor_locations(tensors) | _node_locations(graph.node)


def _node_locations(nodes: Iterable[onnx.NodeProto]) -> set[str]:
    """Files named by the tensors in `nodes`' attributes (and their subgraphs)."""
    tensors, locations = [], set()
    for node in nodes:
        for attribute in node.attribute:
            tensors += [attribute.t, *attribute.tensors]
            tensors += [
                t
                for s in (attribute.sparse_tensor, *attribute.sparse_tensors)
                for t in (s.values, s.indices)
            ]
            for subgraph in (attribute.g, *attribute.graphs):
                locations |= _external_locations(subgraph)
    return locations | _tensor_locations(tensors)


def _tensor_locations(tensors: Iterable[onnx.TensorProto]) -> set[str]:
    locations = set()
    for tensor in tensors:
        if uses_external_data(tensor):
            entries = {entry.key: entry.value for entry in tensor.external_data}
            locations.add(entries.get("location", "?"))
    return locations


def external_data_files(model: onnx.ModelProto) -> set[str]:
    """Files named by the model's tensors stored as external data: in the main graph and
    its subgraphs, and in the model's local functions (whose nodes carry tensors too)."""
    locations = _external_locations(model.graph)
    for function in model.functions:
        locations |= _node_locations(function.node)
    return locations


def _check_tensor(path: Path, kind: str, value: onnx.ValueInfoProto, elem_type: int) -> None:
    """A rank-2 tensor of `elem_type`; inputs also need dynamic [batch, seq] axes."""
    want = onnx.TensorProto.DataType.Name(elem_type).lower()
    axes = "[batch, seq]" if kind == "input" else "[batch, classes or dims]"
    tensor = value.type.tensor_type if value.type.HasField("tensor_type") else None
    if tensor is None or tensor.elem_type != elem_type or len(tensor.shape.dim) != 2:
        found = "not a tensor"
        if tensor is not None:
            dtype = onnx.TensorProto.DataType.Name(tensor.elem_type).lower()
            rank = len(tensor.shape.dim) if tensor.HasField("shape") else "unknown"
            found = f"{dtype} of rank {rank}"
        raise BundleError(f"{path}: ONNX {kind} '{value.name}' is {found}; expected {want} {axes}")
    fixed = [d.dim_value for d in tensor.shape.dim if d.WhichOneof("value") == "dim_value"]
    if kind == "input" and fixed:
        raise BundleError(
            f"{path}: ONNX input '{value.name}' has a fixed size {fixed}; expected dynamic "
            "[batch, seq] axes (each batch is padded to its longest sequence)"
        )


def inspect_onnx(
    path: Path, labels: list[str], embedding_output: str | None
) -> tuple[list[str], int | None]:
    """Check a model file's interface against the bundle contract.

    Returns:
        The graph's input names in graph order, and its default-domain opset.
    """
    if not path.is_file():
        raise ValueError(f"ONNX model {path}: file not found")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends, no common base
        raise BundleError(f"{path}: not a readable ONNX model: {exc}") from exc
    external = external_data_files(model)
    if external:
        raise BundleError(
            f"{path}: weights are stored in external data files {sorted(external)}; a bundle "
            "holds one self-contained model.onnx: re-save it with onnx.save_model(model, path, "
            "save_as_external_data=False) (possible below 2 GB)"
        )
    graph = model.graph
    inputs = [value.name for value in graph.input]
    unknown = [name for name in inputs if name not in INPUT_NAMES]
    missing = [name for name in REQUIRED_INPUTS if name not in inputs]
    if unknown or missing:
        raise BundleError(
            f"{path}: ONNX inputs are {inputs}; expected {list(REQUIRED_INPUTS)}, optionally "
            f"token_type_ids (missing {missing}, unknown {unknown})"
        )
    for value in graph.input:
        _check_tensor(path, "input", value, INT64)
    outputs = {value.name: value for value in graph.output}
    if LOGITS not in outputs:
        raise BundleError(
            f"{path}: the ONNX model has no output named '{LOGITS}' (float32 [batch, classes]); "
            f"its outputs are {list(outputs)}: re-export it with the class scores named '{LOGITS}'"
        )
    _check_tensor(path, "output", outputs[LOGITS], FLOAT32)
    classes = outputs[LOGITS].type.tensor_type.shape.dim[1].dim_value
    if classes and classes != len(labels):
        raise BundleError(
            f"{path}: ONNX output '{LOGITS}' has {classes} classes, but {len(labels)} labels "
            f"were given ({labels}); give one label per logit, in logit order"
        )
    if embedding_output == LOGITS:
        raise BundleError(
            f"{path}: the embedding output must be another output than '{LOGITS}' (a pooled "
            "vector, float32 [batch, dims])"
        )
    if embedding_output is not None:
        if embedding_output not in outputs:
            raise BundleError(
                f"{path}: no ONNX output '{embedding_output}' to use as the embedding output "
                f"(float32 [batch, dims]); its outputs are {list(outputs)}"
            )
        _check_tensor(path, "output", outputs[embedding_output], FLOAT32)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return inputs, opset


def check_onnx_io(path: Path, meta: BundleMeta) -> None:
    """A bundle's ONNX file against the contract and its bundle.json: the inputs it declares,
    `logits` for its labels, its embedding output."""
    inputs, _ = inspect_onnx(path, meta.labels, meta.embedding_output)
    if inputs != meta.inputs:
        raise BundleError(f"{path}: ONNX inputs are {inputs}, bundle.json says {meta.inputs}")


def _meta(path: Path) -> BundleMeta:
    try:
        raw = json.loads((path / "bundle.json").read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path / 'bundle.json'} is not valid JSON: {exc}") from exc
    if isinstance(raw, dict) and raw.get("format_version", 1) != FORMAT_VERSION:
        raise BundleError(
            f"{path / 'bundle.json'}: format_version {raw.get('format_version', 1)} is not "
            f"readable by this version (it reads {FORMAT_VERSION}); export or import it again"
        )
    try:
        return BundleMeta.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(map(str, first["loc"]))
        raise BundleError(f"{path / 'bundle.json'}: field '{field}': {first['msg']}") from exc


def seal_bundle(path: Path) -> str:
    """Write the manifest of the bundle files in `path` (the last file a bundle gets);
    returns its sha256, which registering records outside the bundle."""
    names = [f for f in (*REQUIRED_FILES, QUANTIZED_FILE) if (path / f).exists()]
    return write_manifest(path, names)


def verify_bundle_files(path: Path, manifest_sha256: str | None = None) -> str:
    """Every file of the bundle in `path` against its manifest, and the manifest against
    `manifest_sha256` when given (see `shiftwatch.manifest`); returns the manifest's hash.

    Bundles written before the manifest are refused, not read with a warning: a warning
    would let anyone skip every check by deleting manifest.json, and exporting or
    importing again writes one.
    """
    try:
        return verify_manifest(
            path, manifest_sha256, REQUIRED_FILES, (QUANTIZED_FILE,), STORE_FILES
        )
    except ManifestError as exc:
        raise BundleError(str(exc)) from exc


def read_bundle(path: Path | str, manifest_sha256: str | None = None) -> ModelBundle:
    """Load and validate a bundle folder.

    Args:
        manifest_sha256: the manifest's hash as recorded outside the bundle (the model
            store's metadata: `shiftwatch.model_store.read_stored_bundle`); None for a plain
            folder, whose files are still checked against its manifest.

    Raises:
        BundleError: no manifest, or one that is not the recorded one; a file missing,
            extra, or not the one the manifest lists (all before any file is parsed); bad
            JSON or bundle.json field, tokenizer hash or size mismatch, or ONNX
            inputs/outputs off-contract. The reference window is the monitor's and the
            exporter's: `shiftwatch.reference.load_reference` reads and checks it (pandas
            and pyarrow, which the serving image does not carry).
    """
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"model bundle {path} does not exist")
    manifest_sha256 = verify_bundle_files(path, manifest_sha256)
    meta = _meta(path)
    if (meta.embedding_output is None) != (meta.embedding_reduction is None):
        raise BundleError(
            f"{path / 'bundle.json'}: embedding_output and embedding_reduction go together"
        )
    try:
        tokenizer = TextTokenizer.load(
            path / "tokenizer.json", meta.tokenizer_sha256, meta.max_positions
        )
    except TokenizerError as exc:
        raise BundleError(str(exc)) from exc
    if tokenizer.vocab_size != meta.vocab_size:
        raise BundleError(
            f"{path}: tokenizer.json has {tokenizer.vocab_size} tokens, "
            f"bundle.json says {meta.vocab_size}"
        )
    check_onnx_io(path / "model.onnx", meta)
    if (path / QUANTIZED_FILE).exists():
        check_onnx_io(path / QUANTIZED_FILE, meta)
    return ModelBundle(path, meta, tokenizer, manifest_sha256)
