"""Datasets: the embedded multi-domain generator and the loader for user data."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from shiftwatch.data.loader import DataError, content_sha256, load_sequences, save_dataset
from shiftwatch.data.synthetic import (
    CLASS_NAMES,
    MAX_TRAINED_LENGTH,
    SHIFT_SETS,
    DataConfig,
    generate_dataset,
    manifest,
)

__all__ = [
    "CLASS_NAMES",
    "MAX_TRAINED_LENGTH",
    "SHIFT_SETS",
    "DataConfig",
    "EMBEDDED",
    "DataError",
    "Dataset",
    "dataset_slug",
    "generate_dataset",
    "load_dataset",
    "load_sequences",
    "save_dataset",
    "write_default_dataset",
    "write_docstring_dataset",
]


EMBEDDED = "embedded"  # the source name of the generator's dataset


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: rows plus what a run must record to find it again."""

    frame: pd.DataFrame  # columns text, label, domain, split
    labels: tuple[str, ...]  # class names in logit order
    source: str  # "embedded" or the path it was read from
    content_sha256: str
    input_kind: str = "tokens"  # "tokens" (pre-split words) or "text" (raw text)

    @property
    def slug(self) -> str:
        """A short name for folders and model names: `embedded`, or the file or folder's name."""
        return dataset_slug(self.source)

    def split(self, name: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == name].reset_index(drop=True)

    @property
    def eval_sets(self) -> list[str]:
        """`test` then every named shift set, in first-seen order."""
        names = [s for s in dict.fromkeys(self.frame["split"]) if s not in ("train", "val")]
        return sorted(names, key=lambda s: s != "test")


def dataset_slug(source: str) -> str:
    """`embedded`, or the file's stem (a folder's name) in lowercase letters, digits, '-', '_'."""
    if source == EMBEDDED:
        return EMBEDDED
    slug = re.sub(r"[^a-z0-9_-]+", "-", Path(source).stem.lower()).strip("-_")[:40]
    return slug or "data"


def load_dataset(path: Path | str | None = None, config: DataConfig | None = None) -> Dataset:
    """Load the embedded default (path None or "embedded"), a generated folder, or a user file."""
    config = config or DataConfig()
    if path is None or str(path) == EMBEDDED:
        frame = generate_dataset(config)
        return Dataset(frame, CLASS_NAMES, EMBEDDED, content_sha256(frame))
    path = Path(path)
    if path.is_dir():
        try:
            recorded = json.loads((path / "manifest.json").read_text())
            frame = pd.read_parquet(path / "dataset.parquet")
            expected, classes = recorded["content_sha256"], tuple(recorded["classes"])
            input_kind = recorded.get("input", "tokens")
            digest = content_sha256(frame)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # OSError: a missing file; ValueError: bad JSON or an unreadable parquet
            # (pyarrow's errors subclass it); KeyError/TypeError: a malformed manifest
            # or frame.
            raise DataError(f"{path}: not a readable generated dataset folder: {exc}") from exc
        if digest != expected:
            raise DataError(f"{path}: content hash {digest} does not match its manifest")
        return Dataset(frame, classes, str(path), digest, input_kind)
    frame, input_kind = load_sequences(path, seed=config.seed)
    labels = tuple(sorted(set(frame.loc[frame["split"] == "train", "label"])))
    return Dataset(frame, labels, str(path), content_sha256(frame), input_kind)


def write_default_dataset(directory: Path, config: DataConfig | None = None) -> dict:
    """Generate the embedded dataset into `directory`; returns its manifest."""
    config = config or DataConfig()
    frame = generate_dataset(config)
    meta = manifest(frame, config)
    save_dataset(frame, directory, meta)
    return meta


def write_docstring_dataset(directory: Path, config=None) -> dict:
    """Build the real docstring dataset (`shiftwatch.data.docstrings`) into `directory`; returns
    its manifest."""
    from shiftwatch.data.docstrings import (
        DocstringConfig,
        build_docstring_dataset,
        docstring_manifest,
    )

    config = config or DocstringConfig()
    frame = build_docstring_dataset(config)
    meta = docstring_manifest(frame, config)
    save_dataset(frame, directory, meta)
    return meta
