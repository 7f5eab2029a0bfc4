"""Text to token ids through Hugging Face `tokenizers`: one encoding path for every stage.

Training, export parity, the reference window, the service and the monitor all
encode with a `TextTokenizer` loaded from the same `tokenizer.json`, hashed in the
run folder and the bundle. Tokenizers that shiftwatch trains itself:

- `wordlevel`: one id per whitespace-separated word of the training split, for data
  given as pre-split tokens (the embedded dataset). Ids follow the old frequency-ranked
  vocabulary exactly (`<pad>`=0, `<unk>`=1, then most frequent first, ties by token).
- `bpe`: byte-pair-encoding subwords trained on the training split, for raw text, so
  unseen words are split into known pieces instead of collapsing to `<unk>` (only a
  character never seen in training is unknown). BERT's normaliser and pre-tokeniser
  (whitespace and punctuation). BPE rather than WordPiece: `tokenizers`' WordPiece
  trainer (and BPE with a continuing-subword prefix) picks a different vocabulary from
  run to run when pair counts tie; plain BPE training is deterministic, which a
  reproducible study needs (`tests/core/test_tokenizer.py` checks it).

Either way the ids after the two special tokens are ordered by training frequency,
so an id doubles as a frequency rank for the drift features. A tokenizer that came
with an imported model keeps its own ids (and special tokens).

A tokenizer.json is read only within `shiftwatch/tokenizer_limits.py`'s limits (its
size, its truncation length, the types of its normaliser and pre-tokeniser).

Words longer than `MAX_WORD_CHARS` characters are clipped to that length before
encoding (and counted), so one pathological token can neither cost quadratic time
in the subword search nor vanish into a single `<unk>`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from shiftwatch.tokenizer_limits import (
    MAX_TOKENIZER_BYTES,
    TokenizerLimitError,
    check_max_length,
    check_tokenizer_json,
)

PAD = "<pad>"
UNK = "<unk>"
MAX_WORD_CHARS = 100  # longer words are clipped (BERT's WordPiece gives up on them there)
KINDS = ("auto", "wordlevel", "bpe")
_LONG_WORD = re.compile(rf"\S{{{MAX_WORD_CHARS + 1},}}")
# Names a pad token goes by in tokenizers shiftwatch did not train.
_PAD_NAMES = (PAD, "[PAD]", "<|pad|>", "<|endoftext|>")


class TokenizerError(ValueError):
    """A tokenizer file that is missing, malformed or does not match its hash."""


@dataclass(frozen=True)
class TokenizerConfig:
    """Which tokenizer a training run builds on its training split."""

    kind: Literal["auto", "wordlevel", "bpe"] = "auto"  # auto: by how the data came
    vocab_size: int = 8000  # bpe: target vocabulary, special tokens included
    min_frequency: int = 2  # bpe: merges seen fewer times are not made
    lowercase: bool = True  # bpe: BERT-uncased normalisation

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"tokenizer kind {self.kind!r} is not one of {list(KINDS)}")
        if self.vocab_size < 100 or self.min_frequency < 1:
            raise ValueError("tokenizer vocab_size must be >= 100 and min_frequency >= 1")

    def resolve(self, input_kind: str) -> str:
        """The concrete kind: `auto` is wordlevel for pre-split tokens, bpe for text."""
        if self.kind != "auto":
            return self.kind
        return "wordlevel" if input_kind == "tokens" else "bpe"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Encoded:
    """A batch of encoded texts."""

    ids: list[list[int]]  # one id list per text, never empty
    clipped_words: list[int]  # per text: words clipped to MAX_WORD_CHARS characters
    truncated: list[bool]  # per text: ids cut at the tokenizer's max_length


def clip_long_words(text: str) -> tuple[str, int]:
    """`text` with every word over MAX_WORD_CHARS characters cut to that length; and how many."""
    if len(text) <= MAX_WORD_CHARS:
        return text, 0
    clipped, count = _LONG_WORD.subn(lambda m: m.group(0)[:MAX_WORD_CHARS], text)
    return clipped, count


class TextTokenizer:
    """A `tokenizers.Tokenizer` with the project's contract: exact-file hash, special ids,
    clipping of long words, optional truncation, and no padding (batches pad themselves)."""

    def __init__(self, serialized: str, max_length: int | None = None) -> None:
        try:
            raw = json.loads(serialized)
            # The limits first: `tokenizers` builds whatever the file describes.
            check_tokenizer_json(raw)
            check_max_length(max_length, "max_length")
        except TokenizerLimitError as exc:
            raise TokenizerError(str(exc)) from exc
        except (ValueError, AttributeError) as exc:  # not JSON, or not a JSON object
            raise TokenizerError(f"not a valid tokenizer.json: {exc}") from exc
        try:
            self.backend = Tokenizer.from_str(serialized)
        except Exception as exc:  # tokenizers raises a bare Exception for bad JSON
            raise TokenizerError(f"not a valid tokenizer.json: {exc}") from exc
        self.serialized = serialized
        # Hash of the exact tokenizer.json bytes, recorded in runs and bundles.
        self.sha256 = hashlib.sha256(serialized.encode("utf-8")).hexdigest()
        self.max_length = max_length
        self.backend.no_padding()
        if max_length is not None:
            self.backend.enable_truncation(max_length)
        else:
            self.backend.no_truncation()
        vocab = self.backend.get_vocab(with_added_tokens=True)
        unk_token = raw.get("model", {}).get("unk_token")
        self.unk_id: int | None = vocab.get(unk_token) if unk_token else None
        self.pad_id: int = next(
            (vocab[name] for name in _PAD_NAMES if name in vocab),
            (raw.get("padding") or {}).get("pad_id", 0),
        )
        specials = {t["id"] for t in raw.get("added_tokens", []) if t.get("special")}
        self.special_ids = frozenset(
            specials | {self.pad_id} | {i for i in [self.unk_id] if i is not None}
        )

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    @property
    def kind(self) -> str:
        """The model type of the tokenizer (WordLevel, WordPiece, BPE, Unigram)."""
        return json.loads(self.serialized)["model"]["type"]

    def truncating(self, max_length: int) -> TextTokenizer:
        """The same tokenizer, cutting sequences at `max_length` ids (a model's limit)."""
        return TextTokenizer(self.serialized, max_length)

    def encode(self, texts: Sequence[str]) -> Encoded:
        """Encode a batch. A text with no token at all (e.g. only control characters)
        becomes one `<unk>` (or pad) id, so every sequence reaches the model non-empty."""
        clipped = [clip_long_words(text) for text in texts]
        encodings = self.backend.encode_batch([text for text, _ in clipped])
        empty = [self.unk_id if self.unk_id is not None else self.pad_id]
        return Encoded(
            ids=[e.ids or empty for e in encodings],
            clipped_words=[count for _, count in clipped],
            truncated=[bool(e.overflowing) for e in encodings],
        )

    def save(self, path: Path) -> None:
        Path(path).write_bytes(self.serialized.encode("utf-8"))

    @classmethod
    def load(
        cls, path: Path, expected_sha256: str | None = None, max_length: int | None = None
    ) -> TextTokenizer:
        """Load `tokenizer.json`, checking its hash against `expected_sha256` when given."""
        try:
            size = Path(path).stat().st_size
            if size > MAX_TOKENIZER_BYTES:
                raise TokenizerError(
                    f"{path} is {size} bytes, over the {MAX_TOKENIZER_BYTES} a tokenizer.json "
                    "may have (MAX_TOKENIZER_BYTES)"
                )
            # Bytes, decoded as UTF-8: the hash is of the exact file (text mode would turn \r\n
            # into \n), and a vocabulary's non-ASCII tokens never depend on the locale.
            serialized = Path(path).read_bytes().decode("utf-8")
        except FileNotFoundError as exc:
            raise TokenizerError(f"tokenizer file not found: {path}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenizerError(f"tokenizer file {path} cannot be read: {exc}") from exc
        try:
            tokenizer = cls(serialized, max_length)
        except TokenizerError as exc:
            raise TokenizerError(f"{path}: {exc}") from exc
        if expected_sha256 is not None and expected_sha256 != tokenizer.sha256:
            raise TokenizerError(
                f"tokenizer hash mismatch in {path}: expected {expected_sha256}, "
                f"got {tokenizer.sha256}"
            )
        return tokenizer


def _ranked_vocab(counts: Counter, tokens: Iterable[str]) -> dict[str, int]:
    """`<pad>`=0, `<unk>`=1, then `tokens` by training frequency (descending), ties by token."""
    ranked = sorted((t for t in tokens if t not in (PAD, UNK)), key=lambda t: (-counts[t], t))
    return {token: i for i, token in enumerate((PAD, UNK, *ranked))}


def _finish(backend: Tokenizer) -> TextTokenizer:
    backend.add_special_tokens([PAD, UNK])
    return TextTokenizer(backend.to_str())


def _train_wordlevel(texts: list[str]) -> TextTokenizer:
    counts = Counter(word for text in texts for word in text.split())
    backend = Tokenizer(models.WordLevel(_ranked_vocab(counts, counts), unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return _finish(backend)


def _bpe(vocab: dict[str, int] | None, merges: list | None, lowercase: bool) -> Tokenizer:
    model = models.BPE(vocab, merges, unk_token=UNK) if vocab else models.BPE(unk_token=UNK)
    backend = Tokenizer(model)
    backend.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.BPEDecoder()
    return backend


def _train_bpe(texts: list[str], config: TokenizerConfig) -> TextTokenizer:
    backend = _bpe(None, None, config.lowercase)
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=[PAD, UNK],
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    # Re-number the trained pieces by how often they occur in the training split, so ids
    # are frequency ranks like the word-level vocabulary's. Segmentation does not depend
    # on ids (merges are pairs of pieces, applied in their learned order).
    trained = backend.get_vocab()
    by_id = {i: t for t, i in trained.items()}
    counts = Counter(by_id[i] for e in backend.encode_batch(texts) for i in e.ids)
    merges = [tuple(pair) for pair in json.loads(backend.to_str())["model"]["merges"]]
    return _finish(_bpe(_ranked_vocab(counts, trained), merges, config.lowercase))


def train_tokenizer(
    texts: Iterable[str], config: TokenizerConfig, input_kind: str
) -> TextTokenizer:
    """Build the tokenizer of a training run from its training split.

    Args:
        texts: the training split's texts.
        config: which kind and size.
        input_kind: how the dataset came, `tokens` (pre-split words) or `text`.
    """
    clipped = [clip_long_words(text)[0] for text in texts]
    if not clipped:
        raise ValueError("a tokenizer needs at least one training text")
    kind = config.resolve(input_kind)
    if kind == "wordlevel":
        return _train_wordlevel(clipped)
    return _train_bpe(clipped, config)
