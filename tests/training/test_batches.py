import numpy as np
import pandas as pd
import pytest
import torch

from shiftwatch.tokenizer import TokenizerConfig, train_tokenizer
from training.batches import EncodedSplit, encode_split, pad, predict, shuffled_batches
from training.model import SequenceClassifier, variant_config

pytestmark = pytest.mark.unit


def test_encode_split():
    frame = pd.DataFrame({"text": ["a b", "b zzz"], "label": ["y", "x"], "domain": ["d1", "d2"]})
    tokenizer = train_tokenizer(["b b a"], TokenizerConfig(), "tokens")  # b=2, a=3
    split = encode_split(frame, tokenizer, labels=("x", "y"))
    assert len(split) == 2
    assert [ids.tolist() for ids in split.ids] == [[3, 2], [2, 1]]
    assert split.ids[0].dtype == np.int64
    assert split.labels.tolist() == [1, 0]
    assert split.domains.tolist() == ["d1", "d2"]


def test_pad_right_pads_with_mask():
    input_ids, attention_mask = pad([np.array([5, 6, 7]), np.array([8])])
    assert input_ids.tolist() == [[5, 6, 7], [8, 0, 0]]  # 0: <pad>
    assert attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert input_ids.dtype == attention_mask.dtype == torch.int64


def test_shuffled_batches_cover_every_row_once():
    ids = [np.arange(2, 2 + n) for n in range(1, 8)]
    split = EncodedSplit(ids=ids, labels=np.arange(7), domains=np.array(["d"] * 7))
    batches = list(shuffled_batches(split, batch_size=3, rng=np.random.default_rng(0)))
    assert [len(labels) for _, _, labels in batches] == [3, 3, 1]
    seen = torch.cat([labels for _, _, labels in batches]).tolist()
    assert sorted(seen) == list(range(7))
    assert seen != list(range(7))  # shuffled
    for input_ids, attention_mask, labels in batches:
        # each row's unpadded ids are the sequence its label points at
        for row, label in enumerate(labels.tolist()):
            length = int(attention_mask[row].sum())
            assert input_ids[row, :length].tolist() == ids[label].tolist()


def test_predict_keeps_input_order(tiny_model_fields):
    torch.manual_seed(0)
    model = SequenceClassifier(variant_config("research", **tiny_model_fields))
    sequences = [np.array([2, 3, 4, 5, 6]), np.array([7]), np.array([8, 9, 10])]
    logits, pooled = predict(model, sequences, batch_size=2)  # batched by length: [1], [0, 2]
    assert logits.shape == (3, 6) and pooled.shape == (3, 16)
    assert not model.training
    for row, seq in enumerate(sequences):
        input_ids = torch.from_numpy(seq)[None]
        with torch.no_grad():
            alone = model(input_ids, torch.ones_like(input_ids))[0][0].numpy()
        np.testing.assert_allclose(logits[row], alone, atol=1e-5)
