import json

import pytest

from shiftwatch.vocab import PAD, PAD_ID, UNK, UNK_ID, VocabError, Vocabulary, tokenize


def test_special_ids():
    assert (PAD_ID, UNK_ID) == (0, 1)
    vocab = Vocabulary.build([["a"]])
    assert vocab.tokens[PAD_ID] == PAD == "<pad>"
    assert vocab.tokens[UNK_ID] == UNK == "<unk>"


def test_build_orders_by_frequency_then_token():
    # counts: b=3, a=2, z=1, c=1 -> b, a, then the ties c before z
    vocab = Vocabulary.build([["b", "a", "b", "z"], ["c", "a", "b"]])
    assert vocab.tokens == (PAD, UNK, "b", "a", "c", "z")
    assert len(vocab) == 6


def test_build_min_count_and_specials_in_data():
    # specials seen in training data must not be duplicated or re-ranked
    vocab = Vocabulary.build([["a", "a", "b", PAD, PAD, PAD, UNK]], min_count=2)
    assert vocab.tokens == (PAD, UNK, "a")


def test_encode_maps_unknown_to_unk_id():
    vocab = Vocabulary.build([["b", "a", "b"]])
    assert vocab.encode(["b", "a", "never", "b", PAD]) == [2, 3, UNK_ID, 2, PAD_ID]
    assert vocab.encode([]) == []


@pytest.mark.parametrize(
    "tokens",
    [("a", "b"), (UNK, PAD, "a"), (PAD, UNK, "a", "a")],
    ids=["no-specials", "specials-swapped", "duplicate"],
)
def test_invalid_token_lists_rejected(tokens):
    with pytest.raises(VocabError):
        Vocabulary(tokens)


def test_save_load_round_trip(tmp_path):
    vocab = Vocabulary.build([["x", "y", "y"]])
    path = tmp_path / "vocab.json"
    vocab.save(path)
    assert json.loads(path.read_text())["sha256"] == vocab.sha256
    loaded = Vocabulary.load(path, expected_sha256=vocab.sha256)
    assert loaded == vocab
    assert loaded.encode(["y", "x", "q"]) == [2, 3, UNK_ID]


def test_sha256_depends_on_order():
    assert Vocabulary((PAD, UNK, "a", "b")).sha256 != Vocabulary((PAD, UNK, "b", "a")).sha256


def test_load_expected_hash_mismatch(tmp_path):
    path = tmp_path / "vocab.json"
    Vocabulary.build([["x"]]).save(path)
    with pytest.raises(VocabError, match="hash mismatch"):
        Vocabulary.load(path, expected_sha256="0" * 64)


def test_load_tampered_file(tmp_path):
    path = tmp_path / "vocab.json"
    vocab = Vocabulary.build([["x", "y"]])
    vocab.save(path)
    raw = json.loads(path.read_text())
    raw["tokens"] = [PAD, UNK, "y", "x"]  # reordered ids, stale recorded hash
    path.write_text(json.dumps(raw))
    with pytest.raises(VocabError, match="hash mismatch"):
        Vocabulary.load(path)


@pytest.mark.parametrize("content", ["not json", '{"sha256": "x"}', "[1, 2]"])
def test_load_malformed_file(tmp_path, content):
    path = tmp_path / "vocab.json"
    path.write_text(content)
    with pytest.raises(VocabError, match="not valid"):
        Vocabulary.load(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(VocabError, match="not found"):
        Vocabulary.load(tmp_path / "absent.json")


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("a b c", ["a", "b", "c"]),
        ("  a\tb\n\nc  ", ["a", "b", "c"]),
        ("", []),
        ("   ", []),
        ("mark_a,x", ["mark_a,x"]),  # no punctuation splitting
    ],
)
def test_tokenize_splits_on_whitespace_only(text, tokens):
    assert tokenize(text) == tokens
