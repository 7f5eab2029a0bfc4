"""Encoded splits, padded batches and batched inference."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from shiftwatch.encoding import pad_batch
from shiftwatch.tokenizer import TextTokenizer


@dataclass(frozen=True)
class EncodedSplit:
    """One split as token ids, label indices and domains."""

    ids: list[np.ndarray]  # one int64 array per sequence, unpadded
    labels: np.ndarray  # (N,) int64 class index
    domains: np.ndarray  # (N,) str

    def __len__(self) -> int:
        return len(self.ids)


def encode_split(
    frame: pd.DataFrame, tokenizer: TextTokenizer, labels: Sequence[str]
) -> EncodedSplit:
    index = {label: i for i, label in enumerate(labels)}
    return EncodedSplit(
        ids=[np.asarray(ids, dtype=np.int64) for ids in tokenizer.encode(list(frame["text"])).ids],
        labels=np.asarray([index[label] for label in frame["label"]], dtype=np.int64),
        domains=frame["domain"].to_numpy(dtype=str),
    )


def pad(sequences: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """`shiftwatch.encoding.pad_batch` as torch tensors: (input_ids, attention_mask)."""
    input_ids, attention_mask = pad_batch(sequences)
    return torch.from_numpy(input_ids), torch.from_numpy(attention_mask)


def shuffled_batches(
    split: EncodedSplit, batch_size: int, rng: np.random.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Training batches in a fresh random order: (input_ids, attention_mask, labels)."""
    order = rng.permutation(len(split))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        input_ids, attention_mask = pad([split.ids[r] for r in rows])
        yield input_ids, attention_mask, torch.from_numpy(split.labels[rows])


@torch.no_grad()
def predict(
    model: torch.nn.Module, sequences: Sequence[np.ndarray], batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, classes) and pooled vectors (N, d_model), in input order.

    Sequences are batched by length so little compute goes to padding.
    """
    model.eval()
    order = np.argsort([len(s) for s in sequences], kind="stable")
    logits, pooled = [None] * len(sequences), [None] * len(sequences)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch_logits, batch_pooled = model(*pad([sequences[r] for r in rows]))
        for i, row in enumerate(rows):
            logits[row], pooled[row] = batch_logits[i].numpy(), batch_pooled[i].numpy()
    return np.stack(logits), np.stack(pooled)
