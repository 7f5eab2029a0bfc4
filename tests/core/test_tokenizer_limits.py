"""What a tokenizer.json may ask of the service: refused at load with the field and the limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

from shiftwatch.tokenizer import TextTokenizer, TokenizerError
from shiftwatch.tokenizer_limits import MAX_POSITIONS, MAX_TOKENIZER_BYTES

pytestmark = pytest.mark.unit


def save(tmp_path: Path, normalizer=None, pre_tokenizer=None, max_length: int | None = None):
    """A word-level tokenizer.json with the given text rules; its path."""
    backend = Tokenizer(models.WordLevel({"<pad>": 0, "<unk>": 1, "a": 2}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizer or pre_tokenizers.WhitespaceSplit()
    if normalizer is not None:
        backend.normalizer = normalizer
    if max_length is not None:
        backend.enable_truncation(max_length)
    path = tmp_path / "tokenizer.json"
    path.write_text(backend.to_str())
    return path


def test_the_reported_expanding_normaliser_is_refused(tmp_path: Path) -> None:
    """The finding: Replace("a" -> 10,000 x "x") made a 5,050-character request cost 1.6 GB."""
    path = save(tmp_path, normalizers.Replace("a", "x" * 10_000))
    with pytest.raises(TokenizerError, match=r"normalizer: Replace of .* by 10000 characters"):
        TextTokenizer.load(path)


def test_a_huge_truncation_length_is_refused(tmp_path: Path) -> None:
    path = save(tmp_path, max_length=2_000_000_000)
    with pytest.raises(
        TokenizerError, match=rf"truncation.max_length 2000000000 is over {MAX_POSITIONS}"
    ):
        TextTokenizer.load(path)
    with pytest.raises(TokenizerError, match=rf"max_length {MAX_POSITIONS + 1} is over"):
        TextTokenizer.load(save(tmp_path), max_length=MAX_POSITIONS + 1)


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    with path.open("wb") as stream:  # sparse: its size is all that is looked at
        stream.truncate(MAX_TOKENIZER_BYTES + 1)
    with pytest.raises(TokenizerError, match=rf"over the {MAX_TOKENIZER_BYTES} a tokenizer.json"):
        TextTokenizer.load(path)


@pytest.mark.parametrize(
    ("normalizer", "pre_tokenizer", "field"),
    [
        # A regex Replace could match the empty string: one insertion per character.
        (normalizers.Replace(Regex(""), "x"), None, "normalizer: Replace"),
        (
            normalizers.Sequence([normalizers.Lowercase(), normalizers.Replace("a", "aa")]),
            None,
            r"normalizer.normalizers\[1\]: Replace",
        ),
        (normalizers.Sequence([normalizers.Lowercase()] * 9), None, "at most 8 steps"),
        (normalizers.Prepend("x" * 100), None, "Prepend adds at most 4"),
        (
            None,
            pre_tokenizers.Split(Regex("(a+)+$"), "isolated"),
            "pre_tokenizer: pre-tokeniser type 'Split'",
        ),
    ],
)
def test_rules_that_could_lengthen_text_or_run_any_regex_are_refused(
    tmp_path: Path, normalizer, pre_tokenizer, field: str
) -> None:
    with pytest.raises(TokenizerError, match=field):
        TextTokenizer.load(save(tmp_path, normalizer, pre_tokenizer))


@pytest.mark.parametrize(
    ("normalizer", "pre_tokenizer"),
    [
        (normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()),  # BERT
        (None, pre_tokenizers.ByteLevel()),  # RoBERTa, ModernBERT
        (  # XLM-R, DeBERTa-v3: collapse runs of spaces
            normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]),
            pre_tokenizers.Metaspace(),
        ),
        (  # Llama-style SentencePiece BPE
            normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]),
            pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Digits()]),
        ),
    ],
)
def test_the_common_classifiers_tokenizers_are_accepted(
    tmp_path: Path, normalizer, pre_tokenizer
) -> None:
    tokenizer = TextTokenizer.load(save(tmp_path, normalizer, pre_tokenizer, max_length=512))
    assert tokenizer.encode(["a  a"]).ids[0]
    assert json.loads(tokenizer.serialized)["truncation"]["max_length"] == 512
