"""Vocabulary and tokenizer: tokens (or whitespace-separated text) to ids.

Ids are ordered by training frequency (most frequent first, after the special
tokens), so an id doubles as a frequency rank for the drift features.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

PAD = "<pad>"
UNK = "<unk>"
PAD_ID = 0
UNK_ID = 1


class VocabError(ValueError):
    """A vocabulary file is missing, malformed or does not match its hash."""


def tokenize(text: str) -> list[str]:
    """Split raw text into tokens on whitespace (the project's one tokenizer)."""
    return text.split()


@dataclass(frozen=True)
class Vocabulary:
    """Token list whose index is the token id; `<pad>`=0 and `<unk>`=1."""

    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.tokens[:2] != (PAD, UNK):
            raise VocabError(f"vocabulary must start with {PAD!r}, {UNK!r}")
        if len(set(self.tokens)) != len(self.tokens):
            raise VocabError("vocabulary has duplicate tokens")
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(self.tokens)})

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]], min_count: int = 1) -> Vocabulary:
        """Build from training sequences: tokens seen at least `min_count` times."""
        counts = Counter(token for seq in sequences for token in seq)
        counts.pop(PAD, None)
        counts.pop(UNK, None)
        # Frequency descending, ties broken by token so the build is deterministic.
        ranked = sorted(
            (t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t)
        )
        return cls((PAD, UNK, *ranked))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Map tokens to ids; unknown tokens become `UNK_ID`."""
        index: dict[str, int] = self._index  # type: ignore[attr-defined]
        return [index.get(t, UNK_ID) for t in tokens]

    @property
    def sha256(self) -> str:
        """Content hash of the token list, recorded in runs and bundles."""
        return hashlib.sha256(json.dumps(list(self.tokens)).encode()).hexdigest()

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"tokens": list(self.tokens), "sha256": self.sha256}))

    @classmethod
    def load(cls, path: Path, expected_sha256: str | None = None) -> Vocabulary:
        """Load `vocab.json`, checking its own hash and, if given, an expected one."""
        try:
            raw = json.loads(Path(path).read_text())
            vocab = cls(tuple(raw["tokens"]))
        except FileNotFoundError as exc:
            raise VocabError(f"vocabulary file not found: {path}") from exc
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise VocabError(f"vocabulary file {path} is not valid: {exc}") from exc
        for want in (raw.get("sha256"), expected_sha256):
            if want is not None and want != vocab.sha256:
                raise VocabError(
                    f"vocabulary hash mismatch in {path}: expected {want}, got {vocab.sha256}"
                )
        return vocab
