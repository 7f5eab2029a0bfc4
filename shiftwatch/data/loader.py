"""Bring-your-own data: JSONL, CSV or Parquet in, the generator's frame layout out.

Columns: `tokens` (pre-split words: a list of strings, or one space-separated
string) or `text` (raw text, for a subword tokenizer), `label`, `domain`, optional
`split`. Both become one `text` column (tokens joined by single spaces); which one
the file had is the dataset's input kind, from which training picks its tokenizer.
Without `split`, rows are split 80/10/10 into train/val/test, deterministically
from a seed. Split values other than train/val/test name extra evaluation sets
(shift sets).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED_SPLITS = ("train", "val", "test")
FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}


class DataError(ValueError):
    """User data that cannot be used, with the column (and row) at fault."""


def _read(path: Path) -> pd.DataFrame:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unsupported format {path.suffix!r}; use one of {sorted(FORMATS)}")
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        if fmt == "jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        if fmt == "csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        return pd.read_parquet(path)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot be read as {fmt}: {exc}") from exc


def _as_text(value: object, column: str, row: int) -> str:
    """One row's sequence as text: a string as it is (stripped), a token list joined by spaces."""
    if isinstance(value, str):
        text = value.strip() if column == "text" else " ".join(value.split())
    elif column == "tokens" and (
        isinstance(value, list | tuple | np.ndarray) and all(isinstance(t, str) for t in value)
    ):
        # Entries are re-split on whitespace so list input encodes exactly like a string.
        text = " ".join(word for entry in value for word in entry.split())
    else:
        kind = "a list of strings or a string" if column == "tokens" else "a string"
        raise DataError(f"row {row}: column '{column}' must be {kind}")
    if not text:
        raise DataError(f"row {row}: column '{column}' is empty")
    return text


def _text_column(raw: pd.DataFrame) -> str:
    for column in ("tokens", "text"):
        if column in raw.columns:
            return column
    raise DataError(
        f"column 'tokens' (or 'text') is missing; found columns {sorted(map(str, raw.columns))}"
    )


def _required_strings(raw: pd.DataFrame, column: str) -> pd.Series:
    if column not in raw.columns:
        raise DataError(
            f"column '{column}' is missing; found columns {sorted(map(str, raw.columns))}"
        )
    values = raw[column]
    bad = values.isna() | (values.astype(str).str.strip() == "")
    if bad.any():
        raise DataError(f"row {int(np.flatnonzero(bad)[0])}: column '{column}' is empty")
    return values.astype(str).str.strip()


def read_labeled_rows(path: Path | str) -> tuple[pd.DataFrame, str]:
    """Read labeled sequences in any of the formats, or a generated dataset folder, keeping
    every other column (e.g. `split`) as stripped strings, for selecting rows by value.

    Returns:
        The frame, columns `text`, `label`, `domain`, then the file's other columns; and the
        input kind, `tokens` or `text`, after the column the file had.

    Raises:
        DataError: naming the first missing or invalid column (and row).
    """
    path = Path(path)
    raw = _read(path / "dataset.parquet" if path.is_dir() else path)
    if raw.empty:
        raise DataError(f"{path}: no rows")
    text_column = _text_column(raw)
    frame = pd.DataFrame(
        {
            "text": [_as_text(v, text_column, i) for i, v in enumerate(raw[text_column])],
            "label": _required_strings(raw, "label"),
            "domain": _required_strings(raw, "domain"),
        }
    )
    for column in raw.columns:
        if column not in ("tokens", "text", "label", "domain"):
            values = raw[column]
            frame[str(column)] = values.astype(str).str.strip().where(values.notna(), None)
    return frame, text_column


@dataclass(frozen=True)
class Selection:
    """Rows of a file whose `column` equals `value` (compared as stripped text)."""

    column: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Selection:
        column, sep, value = text.partition("=")
        if not sep or not column.strip() or not value.strip():
            raise ValueError(f"selection {text!r} is not of the form column=value (e.g. split=ood)")
        return cls(column.strip(), value.strip())

    def __str__(self) -> str:
        return f"{self.column}={self.value}"

    def rows(self, frame: pd.DataFrame, source: str) -> pd.DataFrame:
        """The selected rows; a clear error when the column is absent or nothing matches."""
        if self.column not in frame.columns:
            raise DataError(
                f"{source}: no column {self.column!r} to select {self}; "
                f"columns: {sorted(frame.columns)}"
            )
        chosen = frame[frame[self.column] == self.value]
        if chosen.empty:
            found = sorted(frame[self.column].dropna().unique().tolist())[:10]
            raise DataError(f"{source}: no row has {self}; values of {self.column!r}: {found}")
        return chosen.reset_index(drop=True)


def load_sequences(path: Path | str, seed: int = 0) -> tuple[pd.DataFrame, str]:
    """Read and validate a user dataset for training.

    Returns:
        The frame, columns `text`, `label`, `domain`, `split`; and the input kind,
        `tokens` or `text`, after the column the file had.

    Raises:
        DataError: naming the first missing or invalid column (and row).
    """
    rows, text_column = read_labeled_rows(path)
    frame = rows[["text", "label", "domain"]].copy()
    if "split" in rows.columns:
        frame["split"] = _required_strings(rows, "split")
        missing = [s for s in REQUIRED_SPLITS if s not in set(frame["split"])]
        if missing:
            raise DataError(
                f"column 'split' has no rows for {missing}; train, val and test are required"
            )
    else:
        draw = np.random.default_rng(seed).random(len(frame))
        frame["split"] = np.where(draw < 0.8, "train", np.where(draw < 0.9, "val", "test"))
    unknown = sorted(set(frame["label"]) - set(frame.loc[frame["split"] == "train", "label"]))
    if unknown:
        raise DataError(f"column 'label' has values absent from the train split: {unknown[:5]}")
    return frame.reset_index(drop=True), text_column


def content_sha256(frame: pd.DataFrame) -> str:
    """Hash of the rows' content (text, label, domain, split), independent of storage format."""
    digest = hashlib.sha256()
    for text, label, domain, split in frame[["text", "label", "domain", "split"]].itertuples(
        index=False
    ):
        digest.update(json.dumps([text, label, domain, split]).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def save_dataset(frame: pd.DataFrame, directory: Path, manifest: dict) -> None:
    """Write `dataset.parquet` and `manifest.json` (parquet first, so a manifest implies data)."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "dataset.parquet.tmp"
    frame.to_parquet(tmp, index=False)
    tmp.replace(directory / "dataset.parquet")
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
