"""ONNX classifier trained elsewhere -> model bundle: checks, reference window, bundle.json.

`shiftwatch import` wraps a text classifier exported to ONNX outside shiftwatch (e.g. a
Hugging Face transformers model) with its `tokenizer.json`, its labels (in logit order)
and a labeled reference file into the same bundle `shiftwatch export` writes, so it is
served and monitored like a model trained here. Every input is checked before anything
is written, each error naming the file, tensor or field and what is expected; the
bundle is built in a staging folder and published only once it reads back as valid.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from exports.reference import build_reference
from exports.staging import created_at, git_commit, publish_bundle, staging_folder
from shiftwatch.bundle import BundleError, BundleMeta, ModelBundle, inspect_onnx
from shiftwatch.classification import classification_report
from shiftwatch.data.loader import Selection, read_labeled_rows
from shiftwatch.encoding import pad_batch
from shiftwatch.inference import GRAPH_OPTIMIZATION, OnnxClassifier, open_session
from shiftwatch.manifest import file_sha256
from shiftwatch.names import validate_model_name
from shiftwatch.tokenizer import TextTokenizer

log = logging.getLogger(__name__)


def _check_labels(labels: list[str]) -> None:
    if len(labels) < 2:
        raise ValueError(f"labels: a classifier needs at least 2, got {labels}")
    for label in labels:
        if not isinstance(label, str) or not label or label != label.strip():
            raise ValueError(f"labels: {label!r} is empty or has surrounding whitespace")
    repeated = sorted(label for label, count in Counter(labels).items() if count > 1)
    if repeated:
        raise ValueError(f"labels: {repeated} appear more than once; labels must be distinct")


def _load_tokenizer(path: Path, max_length: int | None) -> tuple[TextTokenizer, int]:
    """The tokenizer, truncating at `max_length`, else at tokenizer.json's own max_length;
    and that length."""
    tokenizer = TextTokenizer.load(path)
    if max_length is None:
        truncation = json.loads(tokenizer.serialized).get("truncation") or {}
        max_length = truncation.get("max_length")
        if max_length is None:
            raise ValueError(
                f"{path} sets no truncation max_length: give the model's positional limit in "
                "token ids with max_length (--max-length), e.g. 512 for BERT"
            )
    if not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be a positive number of token ids, got {max_length!r}")
    return tokenizer.truncating(max_length), max_length


def _reference_rows(
    path: Path, selection: str | None, labels: list[str]
) -> tuple[pd.DataFrame, Selection | None]:
    """The labeled reference rows (the selected ones, when a selection is given)."""
    frame, _ = read_labeled_rows(path)
    chosen = Selection.parse(selection) if selection else None
    if chosen is not None:
        frame = chosen.rows(frame, str(path))
    unknown = sorted(set(frame["label"]) - set(labels))
    if unknown:
        raise ValueError(
            f"{path}: column 'label' has values that are not among the model's labels "
            f"{labels}: {unknown[:10]}"
        )
    return frame.reset_index(drop=True), chosen


def _run(
    classifier: OnnxClassifier, ids: list[list[int]], path: Path, what: str
) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        return classifier.run(*pad_batch(ids, classifier.pad_id))
    except Exception as exc:  # onnxruntime's errors share no base class below Exception
        raise BundleError(f"{path}: onnxruntime failed on {what}: {exc}") from exc


def _probe(
    classifier: OnnxClassifier, tokenizer: TextTokenizer, path: Path, labels: list[str]
) -> None:
    """Run the edge cases of what the tokenizer can produce, before the reference rows."""
    largest = tokenizer.vocab_size - 1
    logits, pooled = _run(
        classifier,
        [[largest]],
        path,
        f"token id {largest}, the tokenizer's largest (does the tokenizer belong to this model?)",
    )
    if logits.ndim != 2 or logits.shape[1] != len(labels):
        raise BundleError(
            f"{path}: the model gives logits of shape {list(logits.shape)} for one sequence, "
            f"but {len(labels)} labels were given; give one label per logit, in logit order"
        )
    if pooled is not None and (pooled.ndim != 2 or len(pooled) != 1):
        raise BundleError(
            f"{path}: embedding output has shape {list(pooled.shape)} for one sequence; "
            "expected [batch, dims]"
        )
    filler = tokenizer.unk_id if tokenizer.unk_id is not None else tokenizer.pad_id
    _run(
        classifier,
        [[filler] * classifier.max_positions, [filler]],
        path,
        f"a padded batch of {classifier.max_positions} ids, the max_length (is it above the "
        "model's positional limit?)",
    )


def _file_of(reference: Path) -> Path:
    """The file `read_labeled_rows` reads for `reference` (a generated dataset folder's parquet)."""
    return reference / "dataset.parquet" if reference.is_dir() else reference


def import_bundle(
    onnx_path: Path,
    tokenizer_path: Path,
    labels: list[str],
    reference: Path,
    models_dir: Path,
    name: str,
    max_length: int | None = None,
    embedding_output: str | None = None,
    reference_rows: str | None = None,
    embedding_dims: int = 8,
    threads: int = 2,
    on_step: Callable[[str], None] | None = None,
) -> ModelBundle:
    """Wrap an ONNX text classifier trained elsewhere into `models_dir/<name>/`.

    Registering the bundle in the BentoML model store is the caller's job
    (`exports.register.register_bundle`).

    Args:
        onnx_path: the model: inputs input_ids, attention_mask (and optionally
            token_type_ids), int64 [batch, seq]; output `logits`, float32 [batch, classes].
        tokenizer_path: its Hugging Face `tokenizer.json`.
        labels: class names in logit order.
        reference: labeled rows (JSONL, CSV, Parquet: text or tokens, label, domain), the
            monitor's reference window and the label-free estimate's calibration set.
        models_dir: the bundle goes to `models_dir/<name>/`, replacing one there.
        name: the bundle's deployable name.
        max_length: the model's positional limit in token ids (default: tokenizer.json's
            truncation max_length).
        embedding_output: an ONNX output with a pooled vector (float32 [batch, dims]), for
            embedding drift; None: no embedding drift.
        reference_rows: use only the reference rows selected by `column=value`.
        embedding_dims: principal components kept of the embedding output.
        threads: onnxruntime intra-op threads while running the reference rows.
        on_step: called with a short description as each step starts.

    Raises:
        ValueError: a bad name, labels, max_length, tokenizer, reference file or ONNX model,
            the message naming the file, tensor or field and what is expected (BundleError,
            DataError and TokenizerError are ValueErrors).
    """
    step = on_step or (lambda _: None)
    onnx_path, tokenizer_path, reference = Path(onnx_path), Path(tokenizer_path), Path(reference)
    step("checking the model, tokenizer and reference rows")
    validate_model_name(name)
    _check_labels(labels)
    if embedding_dims < 1:
        raise ValueError(f"embedding_dims must be at least 1, got {embedding_dims}")
    tokenizer, max_positions = _load_tokenizer(tokenizer_path, max_length)
    inputs, opset = inspect_onnx(onnx_path, labels, embedding_output)
    rows, selection = _reference_rows(reference, reference_rows, labels)
    try:
        ids = tokenizer.encode(list(rows["text"])).ids
    except Exception as exc:  # tokenizers raises a bare Exception
        raise ValueError(f"{tokenizer_path}: cannot encode the reference rows: {exc}") from exc
    # The imported model's training length is unknown: the longest reference sequence stands
    # in for it (the `over_max_length` drift feature flags live input longer than any of them).
    max_trained_length = max(len(sequence) for sequence in ids)
    with staging_folder(models_dir, name) as staging:
        shutil.copyfile(onnx_path, staging / "model.onnx")
        shutil.copyfile(tokenizer_path, staging / "tokenizer.json")
        try:
            session = open_session(staging / "model.onnx", threads, prefer_gpu=False)
        except Exception as exc:  # onnxruntime's errors share no base class below Exception
            raise BundleError(f"{onnx_path}: onnxruntime cannot load the model: {exc}") from exc
        classifier = OnnxClassifier(session, max_positions, tokenizer.pad_id, embedding_output)
        _probe(classifier, tokenizer, onnx_path, labels)
        step(f"running the model on {len(rows)} reference rows")
        try:
            frame, reduction = build_reference(
                classifier, rows, tokenizer, labels, max_trained_length, embedding_dims
            )
        except ValueError as exc:  # logits per label, or an embedding PCA cannot fit
            raise BundleError(f"{onnx_path}: {exc}") from exc
        except Exception as exc:  # onnxruntime's errors share no base class below Exception
            raise BundleError(
                f"{onnx_path}: onnxruntime failed on the reference rows: {exc}"
            ) from exc
        bad = np.flatnonzero(~np.isfinite(frame["confidence"].to_numpy()))
        if len(bad):
            raise BundleError(
                f"{onnx_path}: non-finite logits on {len(bad)} of {len(frame)} reference rows "
                f"(first: row {bad[0]})"
            )
        frame.to_parquet(staging / "reference.parquet", index=False)
        index = {label: i for i, label in enumerate(labels)}
        report = classification_report(
            frame["label"].map(index).to_numpy(),
            frame["predicted_label"].map(index).to_numpy(),
            frame["confidence"].to_numpy(),
            labels,
        )
        meta = BundleMeta(
            name=name,
            architecture="imported",
            labels=labels,
            max_trained_length=max_trained_length,
            max_positions=max_positions,
            tokenizer_sha256=tokenizer.sha256,
            vocab_size=tokenizer.vocab_size,
            inputs=inputs,
            embedding_output=embedding_output,
            opset=opset,
            graph_optimization=GRAPH_OPTIMIZATION,
            training_metrics={
                "reference": {k: float(report[k]) for k in ("accuracy", "macro_f1", "ece")}
            },
            parity=None,  # no torch model here to compare with
            embedding_reduction=reduction,
            reference={
                "rows": len(frame),
                "accuracy": float(report["accuracy"]),
                "source": str(reference),
                "selection": None if selection is None else str(selection),
            },
            created_at=created_at(),
            git_commit=git_commit(),
            # Where the files came from. Their hashes are the manifest's (model.onnx,
            # tokenizer.json: byte-for-byte copies, checked at every read); the reference
            # file is not in the bundle (its rows became reference.parquet), so its hash
            # is provenance only: which file of the user's built this bundle.
            source={
                "kind": "imported",
                "onnx": str(onnx_path),
                "tokenizer": str(tokenizer_path),
                "reference": str(reference),
                "reference_sha256": file_sha256(_file_of(reference)),
            },
        )
        step("validating and publishing the bundle")
        bundle = publish_bundle(staging, meta, models_dir)
    log.info("imported %s as bundle %s", onnx_path, bundle.path)
    return bundle
