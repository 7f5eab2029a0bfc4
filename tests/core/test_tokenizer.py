"""The tokenizer contract: ids, hashes, clipping, truncation, and the embedded dataset's ids."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest

from shiftwatch.tokenizer import (
    MAX_WORD_CHARS,
    PAD,
    UNK,
    TextTokenizer,
    TokenizerConfig,
    TokenizerError,
    train_tokenizer,
)

pytestmark = pytest.mark.unit

WORDS = ["b a b z", "c a b"]
TEXTS = [
    "The tokenizer splits unseen words into pieces.",
    "Tokenizers split words; pieces are counted.",
    "A token and the tokens it makes.",
] * 20
SMALL_BPE = TokenizerConfig(kind="bpe", vocab_size=120, min_frequency=1)


def wordlevel(texts=WORDS) -> TextTokenizer:
    return train_tokenizer(texts, TokenizerConfig(), "tokens")


def test_wordlevel_ids_by_frequency_then_token():
    # counts: b=3, a=2, z=1, c=1 -> b, a, then the ties c before z
    tokenizer = wordlevel()
    vocab = tokenizer.backend.get_vocab()
    assert sorted(vocab, key=vocab.get) == [PAD, UNK, "b", "a", "c", "z"]
    assert tokenizer.encode(["b a never b", "z"]).ids == [[2, 3, 1, 2], [5]]
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.special_ids) == (0, 1, {0, 1})


def test_auto_kind_follows_the_input():
    assert wordlevel().kind == "WordLevel"
    assert train_tokenizer(TEXTS, TokenizerConfig(vocab_size=120), "text").kind == "BPE"


def test_wordlevel_matches_the_old_frequency_ranked_vocabulary(tiny_frame):
    """The rule of the vocabulary this tokenizer replaced: frequency descending, ties by token,
    `<pad>`=0, `<unk>`=1; every split encodes to the same ids."""
    train = tiny_frame.loc[tiny_frame["split"] == "train", "text"]
    counts = Counter(word for text in train for word in text.split())
    ranked = sorted(counts, key=lambda t: (-counts[t], t))
    index = {t: i for i, t in enumerate([PAD, UNK, *ranked])}
    tokenizer = train_tokenizer(train, TokenizerConfig(), "tokens")
    expected = [[index.get(w, 1) for w in text.split()] for text in tiny_frame["text"]]
    assert tokenizer.encode(list(tiny_frame["text"])).ids == expected


@pytest.mark.slow
def test_embedded_dataset_encoding_unchanged():
    """Ids of every row of the full embedded dataset, hashed, equal those that the word
    vocabulary of commit 4960082 (shiftwatch/vocab.py, before tokenizer.json) produced: the
    study's results carry over. The hash was computed with that code, not with this one."""
    from shiftwatch.data import load_dataset

    dataset = load_dataset(None)
    train = dataset.split("train")["text"]
    tokenizer = train_tokenizer(train, TokenizerConfig(), dataset.input_kind)
    digest = hashlib.sha256()
    for ids in tokenizer.encode(list(dataset.frame["text"])).ids:
        digest.update(json.dumps(ids).encode())
    assert tokenizer.vocab_size == 329
    assert digest.hexdigest() == "c4793a225f567756a0ca983be02045956dec645329f13c1183046bc8cbbcd0c6"


def test_bpe_splits_unseen_words_into_known_pieces():
    tokenizer = train_tokenizer(TEXTS, SMALL_BPE, "text")
    pieces = tokenizer.backend.encode("retokenized").tokens
    assert len(pieces) > 1 and UNK not in pieces
    # only a character never seen in training is unknown
    assert UNK in tokenizer.backend.encode("b").tokens


def test_bpe_ids_are_frequency_ranks():
    tokenizer = train_tokenizer(TEXTS, SMALL_BPE, "text")
    counts = Counter(i for ids in tokenizer.encode(TEXTS).ids for i in ids)
    seen = sorted(counts)
    # Ids 2.. are ordered by training frequency: counts never increase with the id.
    assert [counts[i] for i in seen] == sorted((counts[i] for i in seen), reverse=True)
    assert min(seen) == 2


def test_bpe_training_is_deterministic():
    """Ten trainings, one tokenizer (WordPiece's trainer gave ten different ones here)."""
    hashes = {train_tokenizer(TEXTS, SMALL_BPE, "text").sha256 for _ in range(10)}
    assert len(hashes) == 1


def test_long_word_is_clipped_not_refused():
    tokenizer = train_tokenizer(TEXTS, SMALL_BPE, "text")
    word = "tokens" * 40  # 240 characters
    encoded = tokenizer.encode([f"a {word} the", "short"])
    assert encoded.clipped_words == [1, 0]
    clipped = tokenizer.encode([f"a {word[:MAX_WORD_CHARS]} the"])
    assert encoded.ids[0] == clipped.ids[0]
    assert tokenizer.unk_id not in encoded.ids[0]


def test_truncation_at_max_length_is_reported():
    tokenizer = wordlevel().truncating(3)
    encoded = tokenizer.encode(["b a b z c", "b a"])
    assert encoded.ids == [[2, 3, 2], [2, 3]]
    assert encoded.truncated == [True, False]


def test_text_without_tokens_encodes_as_unknown():
    tokenizer = train_tokenizer(TEXTS, SMALL_BPE, "text")
    assert tokenizer.encode(["\x00\x01"]).ids == [[tokenizer.unk_id]]


def test_save_load_round_trip_and_hash(tmp_path):
    tokenizer = wordlevel()
    path = tmp_path / "tokenizer.json"
    tokenizer.save(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == tokenizer.sha256
    loaded = TextTokenizer.load(path, expected_sha256=tokenizer.sha256, max_length=2)
    assert loaded.encode(["b a b"]).ids == [[2, 3]]


def test_load_refuses_a_changed_file(tmp_path):
    path = tmp_path / "tokenizer.json"
    tokenizer = wordlevel()
    tokenizer.save(path)
    raw = json.loads(path.read_text())
    raw["model"]["vocab"]["b"], raw["model"]["vocab"]["a"] = 3, 2  # swapped ids
    path.write_text(json.dumps(raw))
    with pytest.raises(TokenizerError, match="hash mismatch"):
        TextTokenizer.load(path, expected_sha256=tokenizer.sha256)


@pytest.mark.parametrize("content", ["not json", "{}", "[1, 2]"])
def test_load_malformed_file(tmp_path, content):
    path = tmp_path / "tokenizer.json"
    path.write_text(content)
    with pytest.raises(TokenizerError, match="not a valid tokenizer.json"):
        TextTokenizer.load(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(TokenizerError, match="not found"):
        TextTokenizer.load(tmp_path / "absent.json")


def test_special_ids_of_a_bert_style_tokenizer():
    """A tokenizer from elsewhere: its own pad, unknown and special tokens, a post-processor."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "hello": 4, "world": 5}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = TextTokenizer(backend.to_str()).truncating(4)
    assert (tokenizer.pad_id, tokenizer.unk_id) == (0, 1)
    assert tokenizer.special_ids == {0, 1, 2, 3}
    encoded = tokenizer.encode(["hello world hello", "hello"])
    assert encoded.ids == [[2, 4, 5, 3], [2, 4, 3]]  # truncation keeps [SEP]
    assert encoded.truncated == [True, False]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "wordpiece"}, "not one of"),
        ({"vocab_size": 10}, "vocab_size"),
        ({"min_frequency": 0}, "min_frequency"),
    ],
)
def test_config_rejects_bad_values(fields, message):
    with pytest.raises(ValueError, match=message):
        TokenizerConfig(**fields)
