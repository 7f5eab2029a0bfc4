"""Bring-your-own data: JSONL, CSV or Parquet in, the generator's frame layout out.

Columns: `tokens` (list of strings, or one space-separated string) or `text`
(whitespace-tokenized), `label`, `domain`, optional `split`. Without `split`,
rows are split 80/10/10 into train/val/test, deterministically from a seed.
Split values other than train/val/test name extra evaluation sets (shift sets).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from shiftwatch.vocab import tokenize

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


def _as_tokens(value: object, column: str, row: int) -> list[str]:
    if isinstance(value, str):
        tokens = tokenize(value)
    elif isinstance(value, list | tuple | np.ndarray) and all(isinstance(t, str) for t in value):
        # Entries are re-split on whitespace so list input tokenizes exactly like text.
        tokens = [t for entry in value for t in tokenize(entry)]
    else:
        raise DataError(f"row {row}: column '{column}' must be a list of strings or a string")
    if not tokens:
        raise DataError(f"row {row}: column '{column}' is empty")
    return tokens


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


def load_sequences(path: Path | str, seed: int = 0) -> pd.DataFrame:
    """Read and validate a user dataset.

    Returns:
        Columns `tokens` (list of str), `label`, `domain`, `split`.

    Raises:
        DataError: naming the first missing or invalid column (and row).
    """
    path = Path(path)
    raw = _read(path)
    if raw.empty:
        raise DataError(f"{path}: no rows")
    text_column = _text_column(raw)
    frame = pd.DataFrame(
        {
            "tokens": [_as_tokens(v, text_column, i) for i, v in enumerate(raw[text_column])],
            "label": _required_strings(raw, "label"),
            "domain": _required_strings(raw, "domain"),
        }
    )
    if "split" in raw.columns:
        frame["split"] = _required_strings(raw, "split")
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
    return frame.reset_index(drop=True)


def save_dataset(frame: pd.DataFrame, directory: Path, manifest: dict) -> None:
    """Write `dataset.parquet` and `manifest.json` (parquet first, so a manifest implies data)."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "dataset.parquet.tmp"
    frame.to_parquet(tmp, index=False)
    tmp.replace(directory / "dataset.parquet")
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
