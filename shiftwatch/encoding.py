"""Padded batches as numpy arrays: the model's input contract, shared by every stage."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad id sequences to the longest one with `pad_id` (the tokenizer's; shiftwatch's
    own tokenizers use 0).

    Returns:
        input_ids and attention_mask, both int64 (B, T); the mask is 1 on real tokens.
    """
    width = max(len(s) for s in sequences)
    input_ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = seq
        attention_mask[row, : len(seq)] = 1
    return input_ids, attention_mask


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (B, classes) logits, numerically stable."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of class probabilities."""
    return -(probabilities * np.log(np.clip(probabilities, 1e-12, 1.0))).sum(axis=1)
