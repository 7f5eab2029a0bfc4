"""reference.parquet: held-out in-domain rows as the monitor's reference window.

The same function serves a model trained here (its validation split) and an
imported one (the labeled reference file given to `shiftwatch import`).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from shiftwatch.bundle import EmbeddingReduction, probability_columns, reference_columns
from shiftwatch.encoding import entropy, softmax
from shiftwatch.features import drift_features
from shiftwatch.inference import OnnxClassifier
from shiftwatch.tokenizer import TextTokenizer


def fit_embedding_reduction(pooled: np.ndarray, dims: int) -> EmbeddingReduction:
    """PCA of pooled vectors via SVD; the fixed projection the service applies to each request."""
    mean = pooled.mean(axis=0)
    _, singular, components = np.linalg.svd(pooled - mean, full_matrices=False)
    variance = singular**2
    dims = min(dims, components.shape[0])
    return EmbeddingReduction(
        mean=mean.astype(float).tolist(),
        components=components[:dims].astype(float).tolist(),
        explained_variance_ratio=(variance[:dims] / variance.sum()).astype(float).tolist(),
    )


def build_reference(
    classifier: OnnxClassifier,
    frame: pd.DataFrame,
    tokenizer: TextTokenizer,
    labels: list[str],
    max_trained_length: int,
    embedding_dims: int,
) -> tuple[pd.DataFrame, EmbeddingReduction | None]:
    """One row per example of `frame` (columns `text`, `label`, `domain`), from the ONNX model.

    Returns:
        The reference frame (columns per `shiftwatch.bundle.reference_columns`) and the
        embedding reduction fitted on these examples' pooled vectors (None when the
        model has no embedding output).
    """
    ids = tokenizer.encode(list(frame["text"])).ids
    logits, pooled = classifier.predict(ids)
    if logits.shape[1] != len(labels):
        raise ValueError(f"the model gives {logits.shape[1]} logits for {len(labels)} labels")
    probs = softmax(logits)
    features = pd.DataFrame([drift_features(s, tokenizer, max_trained_length) for s in ids])
    reference = features.assign(
        predicted_label=np.asarray(labels)[probs.argmax(axis=1)],
        confidence=probs.max(axis=1),
        entropy=entropy(probs),
        label=frame["label"].to_numpy(),
        domain=frame["domain"].to_numpy(),
    )
    reference["sequence_id"] = [sequence_id(text) for text in frame["text"]]
    for column, values in zip(probability_columns(len(labels)), probs.T, strict=True):
        reference[column] = values
    if pooled is None:
        return reference[reference_columns(0, len(labels))], None
    reduction = fit_embedding_reduction(pooled, embedding_dims)
    embedding = reduction.apply(pooled)
    for i in range(embedding.shape[1]):
        reference[f"embedding_{i}"] = embedding[:, i]
    return reference[reference_columns(embedding.shape[1], len(labels))], reduction


def sequence_id(text: str) -> str:
    """A short hash of a reference row's text: rows two models share join on it."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]
