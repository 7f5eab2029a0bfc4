import json
from collections import Counter
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from shiftwatch.data.synthetic import (
    CLASS_NAMES,
    CONTENT_CLASSES,
    MARKERS,
    MAX_TRAINED_LENGTH,
    ORDER_CLASSES,
    SHIFT_SETS,
    TRAIN_DOMAINS,
    DataConfig,
    content_sha256,
    generate_dataset,
    manifest,
    sample_scenario,
)

pytestmark = pytest.mark.unit

ORDER_LABELS = {CLASS_NAMES[c] for c in ORDER_CLASSES}
CONTENT_LABELS = {CLASS_NAMES[c] for c in CONTENT_CLASSES}
TRAIN_DOMAIN_NAMES = {d.name for d in TRAIN_DOMAINS}


def tokens_of(frame: pd.DataFrame) -> pd.Series:
    """Each row's tokens: the generator writes them joined by single spaces."""
    return frame["text"].str.split(" ")


# Domains whose label noise is zero: there the label is exactly what the tokens say.
NOISE_FREE_DOMAINS = {
    spec.name
    for specs in [TRAIN_DOMAINS, *(s for _, s in SHIFT_SETS.values())]
    for spec in specs
    if spec.label_noise == 0.0
}


@pytest.fixture(scope="module")
def moderate_frame() -> pd.DataFrame:
    """Large enough for distributional claims (a fraction of a second to draw)."""
    config = DataConfig(
        train_per_domain=600, val_per_domain=10, test_per_domain=250, shift_set_size=400
    )
    return generate_dataset(config)


def _split(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    return frame[frame["split"] == name]


def test_same_seed_same_data(tiny_data_config, tiny_frame):
    again = generate_dataset(tiny_data_config)
    pd.testing.assert_frame_equal(again, tiny_frame)
    assert content_sha256(again) == content_sha256(tiny_frame)


def test_other_seed_other_data(tiny_data_config, tiny_frame):
    other = generate_dataset(DataConfig(**{**asdict(tiny_data_config), "seed": 1}))
    assert content_sha256(other) != content_sha256(tiny_frame)


def test_content_hash_sees_every_column(tiny_frame):
    base = content_sha256(tiny_frame)
    for column, value in [("label", "topic_a"), ("domain", "x"), ("split", "x")]:
        changed = tiny_frame.copy()
        changed.loc[0, column] = value if changed.loc[0, column] != value else "topic_b"
        assert content_sha256(changed) != base, column
    changed = tiny_frame.copy()
    changed.at[0, "text"] = tiny_frame.at[0, "text"] + " extra"
    assert content_sha256(changed) != base


def test_frame_layout(tiny_frame):
    assert list(tiny_frame.columns) == ["text", "label", "domain", "split"]
    assert all(isinstance(t, str) and t for t in tiny_frame["text"])
    assert all(t and all(t) for t in tokens_of(tiny_frame))  # single spaces, no empty token
    assert set(tiny_frame["label"]) <= set(CLASS_NAMES)


def test_manifest(tiny_data_config, tiny_frame):
    meta = manifest(tiny_frame, tiny_data_config)
    # train/val/test: 4 domains each; every shift set holds shift_set_size rows
    # (new_domain: 1 domain x 40; the others: 4 domains x 10)
    expected_sizes = {"train": 200, "val": 40, "test": 40} | {name: 40 for name in SHIFT_SETS}
    assert meta["sizes"] == expected_sizes
    assert sum(meta["sizes"].values()) == len(tiny_frame)
    assert meta["content_sha256"] == content_sha256(tiny_frame)
    assert meta["config"] == asdict(tiny_data_config)
    assert meta["classes"] == list(CLASS_NAMES)
    assert meta["order_classes"] == ["first_a", "first_b", "first_c"]
    assert meta["max_trained_length"] == MAX_TRAINED_LENGTH
    assert list(meta["shift_sets"]) == list(SHIFT_SETS)
    json.dumps(meta)  # travels as manifest.json


def test_classes_and_domains(tiny_frame):
    assert len(CLASS_NAMES) >= 6
    assert sorted(CONTENT_CLASSES + ORDER_CLASSES) == list(range(len(CLASS_NAMES)))
    train = _split(tiny_frame, "train")
    assert set(train["domain"]) == TRAIN_DOMAIN_NAMES
    assert len(TRAIN_DOMAIN_NAMES) >= 4
    assert set(train["label"]) == set(CLASS_NAMES)
    assert tokens_of(train).map(len).max() <= MAX_TRAINED_LENGTH


def test_new_domain_is_unseen(tiny_frame):
    domains = set(_split(tiny_frame, "new_domain")["domain"])
    assert domains == {"clinical"}
    assert not domains & TRAIN_DOMAIN_NAMES


def test_order_classes_share_marker_multiset(tiny_frame):
    markers = tokens_of(tiny_frame).map(lambda tokens: [t for t in tokens if t in MARKERS])
    # every sequence holds the three markers exactly once each, or none at all
    assert markers.map(lambda m: sorted(m) in ([], list(MARKERS))).all()
    has_markers = markers.map(bool)
    first_class = markers.map(lambda m: "first_" + m[0].removeprefix("mark_") if m else None)
    noise_free = tiny_frame["domain"].isin(NOISE_FREE_DOMAINS)
    assert noise_free.sum() >= 100
    # without label noise: markers iff an order class, and the class is the first marker
    clean = tiny_frame[noise_free]
    assert (has_markers[noise_free] == clean["label"].isin(ORDER_LABELS)).all()
    assert (first_class[noise_free & has_markers] == clean.loc[has_markers, "label"]).all()
    # with label noise (at most 3% per domain) the agreement stays that high overall
    agree = first_class[has_markers] == tiny_frame.loc[has_markers, "label"]
    assert agree.mean() >= 0.95


def test_length_shift_is_longer_than_training(tiny_frame):
    lengths = tokens_of(_split(tiny_frame, "length_shift")).map(len)
    train_max = tokens_of(_split(tiny_frame, "train")).map(len).max()
    assert lengths.min() > MAX_TRAINED_LENGTH >= train_max


def test_vocab_shift_has_unseen_tokens(tiny_frame):
    train_vocab = {t for tokens in tokens_of(_split(tiny_frame, "train")) for t in tokens}
    unseen = tokens_of(_split(tiny_frame, "vocab_shift")).map(
        lambda tokens: sum(t not in train_vocab for t in tokens) / len(tokens)
    )
    # half the background tokens come from an unseen pool: nearly every row has some
    assert (unseen > 0).mean() >= 0.9
    assert unseen.mean() > 0.3


def test_label_shift_moves_priors(moderate_frame):
    def order_share(split: str) -> float:
        return float(_split(moderate_frame, split)["label"].isin(ORDER_LABELS).mean())

    # training mixture: ~50% order classes; label_shift: 85% by construction
    assert order_share("train") < 0.6
    assert order_share("label_shift") > 0.75
    train_priors = _split(moderate_frame, "train")["label"].value_counts(normalize=True)
    shift_priors = _split(moderate_frame, "label_shift")["label"].value_counts(normalize=True)
    assert (shift_priors - train_priors).abs().sum() > 0.5


def test_bag_of_tokens_cannot_read_order(moderate_frame):
    """A count-based model is near chance on order classes, and strong on content classes."""
    train, test = _split(moderate_frame, "train"), _split(moderate_frame, "test")
    vectorizer = CountVectorizer(analyzer=list)  # each row is already a token list
    bag = LogisticRegression(max_iter=2000).fit(
        vectorizer.fit_transform(tokens_of(train)), train["label"]
    )
    predicted = bag.predict(vectorizer.transform(tokens_of(test)))
    correct = predicted == test["label"].to_numpy()
    is_order = test["label"].isin(ORDER_LABELS).to_numpy()

    # The best a model blind to order can do: the most frequent order class of each domain.
    train_order = train[train["label"].isin(ORDER_LABELS)]
    majority = train_order.groupby("domain")["label"].agg(lambda s: s.value_counts().idxmax())
    constant_accuracy = float(
        (test.loc[is_order, "domain"].map(majority) == test.loc[is_order, "label"]).mean()
    )

    bag_order_accuracy = float(correct[is_order].mean())
    assert is_order.sum() >= 300
    assert bag_order_accuracy <= constant_accuracy + 0.08
    assert bag_order_accuracy < 0.5
    assert float(correct[test["label"].isin(CONTENT_LABELS).to_numpy()].mean()) > 0.9


def test_sample_scenario():
    replay = sample_scenario(None, 30, seed=5)
    assert len(replay) == 30
    assert set(replay["domain"]) <= TRAIN_DOMAIN_NAMES
    assert list(replay.columns) == ["text", "label", "domain"]
    pd.testing.assert_frame_equal(replay, sample_scenario(None, 30, seed=5))
    assert Counter(map(tuple, tokens_of(replay))) != Counter(
        map(tuple, tokens_of(sample_scenario(None, 30, seed=6)))
    )
    assert set(sample_scenario("new_domain", 7, seed=5)["domain"]) == {"clinical"}
    assert tokens_of(sample_scenario("length_shift", 9, seed=5)).map(len).min() > MAX_TRAINED_LENGTH


def test_sample_scenario_unknown_shift_set():
    with pytest.raises(KeyError):
        sample_scenario("nope", 3, seed=0)


@pytest.mark.parametrize(
    "field", ["train_per_domain", "val_per_domain", "test_per_domain", "shift_set_size"]
)
def test_data_config_rejects_zero_sizes(field):
    with pytest.raises(ValueError, match=field):
        DataConfig(**{field: 0})


def test_scenarios_differ_from_dataset_draws(tiny_frame):
    # traffic replay must not repeat the dataset's own rows
    replay = sample_scenario(None, 40, seed=0)
    dataset_rows = {tuple(t) for t in tokens_of(tiny_frame)}
    assert not any(tuple(t) in dataset_rows for t in tokens_of(replay))
    assert np.all(tokens_of(replay).map(len) >= 8)
