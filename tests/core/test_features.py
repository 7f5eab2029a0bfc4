import math

import pytest

from shiftwatch.features import FEATURE_NAMES, drift_features
from shiftwatch.tokenizer import TokenizerConfig, train_tokenizer

pytestmark = pytest.mark.unit

PAD_ID, UNK_ID = 0, 1


def tokenizer_of_size(vocab_size: int):
    """A word-level tokenizer with ids 0..vocab_size-1: <pad>, <unk>, then w0, w1, ... ."""
    words = [f"w{i}" for i in range(vocab_size - 2)]
    # w0 most frequent, so w_i gets id i + 2
    texts = [" ".join(words[: len(words) - k]) for k in range(len(words))]
    tokenizer = train_tokenizer(texts, TokenizerConfig(), "tokens")
    assert tokenizer.vocab_size == vocab_size
    return tokenizer


def test_hand_built_sequence():
    # vocab_size 10: known ids 2..9, rank = id - 1, log ranks scaled by log(8) = 3 ln 2.
    # ids 2, 3, <unk>, 5, 3: known ranks 1, 2, 4, 2 -> mean log = (0 + 1 + 2 + 1) ln2 / 4 = ln2
    features = drift_features([2, 3, UNK_ID, 5, 3], tokenizer_of_size(10), max_trained_length=4)
    assert tuple(features) == FEATURE_NAMES
    assert features["length"] == 5.0
    assert features["oov_share"] == pytest.approx(1 / 5)
    assert features["over_max_length"] == 1.0
    assert features["distinct_share"] == pytest.approx(4 / 5)  # {2, 3, 1, 5}
    assert features["mean_log_rank"] == pytest.approx(1 / 3)
    assert all(isinstance(v, float) for v in features.values())


def test_at_max_length_is_not_over():
    features = drift_features([2, 2, 2, 2], tokenizer_of_size(10), max_trained_length=4)
    assert features["over_max_length"] == 0.0
    assert features["distinct_share"] == pytest.approx(1 / 4)
    assert features["mean_log_rank"] == 0.0  # the most frequent token has rank 1


def test_rarest_token_scales_to_one():
    features = drift_features([9], tokenizer_of_size(10), max_trained_length=4)
    assert features["mean_log_rank"] == pytest.approx(1.0)
    assert features["oov_share"] == 0.0


def test_all_unknown():
    # padding ids are not known tokens either
    features = drift_features([UNK_ID, UNK_ID, PAD_ID], tokenizer_of_size(10), max_trained_length=8)
    assert features["oov_share"] == 1.0
    assert features["mean_log_rank"] == 1.0  # no known token: treated as the rarest
    assert features["distinct_share"] == pytest.approx(2 / 3)


def test_tiny_vocab_does_not_divide_by_zero():
    # vocab_size 3 has one known id; the scale falls back to log 2
    features = drift_features([2, 2], tokenizer_of_size(3), max_trained_length=4)
    assert features["mean_log_rank"] == 0.0
    assert math.isfinite(features["mean_log_rank"])


def test_empty_sequence_raises():
    with pytest.raises(ValueError, match="non-empty"):
        drift_features([], tokenizer_of_size(10), max_trained_length=4)
