"""Datasets: the embedded multi-domain generator and the loader for user data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from shiftwatch.data.loader import DataError, load_sequences, save_dataset
from shiftwatch.data.synthetic import (
    CLASS_NAMES,
    MAX_TRAINED_LENGTH,
    SHIFT_SETS,
    DataConfig,
    content_sha256,
    generate_dataset,
    manifest,
)

__all__ = [
    "CLASS_NAMES",
    "MAX_TRAINED_LENGTH",
    "SHIFT_SETS",
    "DataConfig",
    "DataError",
    "Dataset",
    "generate_dataset",
    "load_dataset",
    "load_sequences",
    "save_dataset",
    "write_default_dataset",
]


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: rows plus what a run must record to find it again."""

    frame: pd.DataFrame  # columns tokens, label, domain, split
    labels: tuple[str, ...]  # class names in logit order
    source: str  # "embedded" or the path it was read from
    content_sha256: str

    def split(self, name: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == name].reset_index(drop=True)

    @property
    def eval_sets(self) -> list[str]:
        """`test` then every named shift set, in first-seen order."""
        names = [s for s in dict.fromkeys(self.frame["split"]) if s not in ("train", "val")]
        return sorted(names, key=lambda s: s != "test")

    @property
    def max_length(self) -> int:
        return int(self.split("train")["tokens"].map(len).max())


def load_dataset(path: Path | str | None = None, config: DataConfig | None = None) -> Dataset:
    """Load the embedded default (path None), a generated folder, or a user file."""
    config = config or DataConfig()
    if path is None:
        frame = generate_dataset(config)
        return Dataset(frame, CLASS_NAMES, "embedded", content_sha256(frame))
    path = Path(path)
    if path.is_dir():
        try:
            recorded = json.loads((path / "manifest.json").read_text())
            frame = pd.read_parquet(path / "dataset.parquet")
            expected, classes = recorded["content_sha256"], tuple(recorded["classes"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # OSError: a missing file; ValueError: bad JSON or an unreadable parquet
            # (pyarrow's errors subclass it); KeyError/TypeError: a malformed manifest.
            raise DataError(f"{path}: not a readable generated dataset folder: {exc}") from exc
        frame["tokens"] = frame["tokens"].map(list)
        digest = content_sha256(frame)
        if digest != expected:
            raise DataError(f"{path}: content hash {digest} does not match its manifest")
        return Dataset(frame, classes, str(path), digest)
    frame = load_sequences(path, seed=config.seed)
    labels = tuple(sorted(set(frame.loc[frame["split"] == "train", "label"])))
    return Dataset(frame, labels, str(path), content_sha256(frame))


def write_default_dataset(directory: Path, config: DataConfig | None = None) -> dict:
    """Generate the embedded dataset into `directory`; returns its manifest."""
    config = config or DataConfig()
    frame = generate_dataset(config)
    meta = manifest(frame, config)
    save_dataset(frame, directory, meta)
    return meta
