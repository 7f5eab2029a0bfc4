import pytest
import torch
from torch.nn import functional as F

from training.model import VARIANTS, ModelConfig, SequenceClassifier, variant_config

pytestmark = pytest.mark.unit

ORDER_AWARE = ("baseline", "research")


@pytest.fixture(params=sorted(VARIANTS))
def variant(request) -> str:
    return request.param


def _model(variant: str, fields: dict) -> SequenceClassifier:
    torch.manual_seed(0)
    return SequenceClassifier(variant_config(variant, **fields))


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eight sequences of ids in 2..19, the last four padded after 7 tokens."""
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(2, 20, (8, 10), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[4:, 7:] = 0
    input_ids[attention_mask == 0] = 0
    labels = torch.randint(0, 6, (8,), generator=generator)
    return input_ids, attention_mask, labels


def _logits(model: SequenceClassifier, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    input_ids = torch.tensor([ids])
    with torch.no_grad():
        logits, pooled = model.eval()(input_ids, torch.ones_like(input_ids))
    return logits[0], pooled[0]


def test_variant_switches(variant, tiny_model_fields):
    config = variant_config(variant, **tiny_model_fields)
    assert (config.positional, config.attention) == (
        VARIANTS[variant]["positional"],
        VARIANTS[variant]["attention"],
    )
    assert config.d_model == 16
    model = SequenceClassifier(config)
    assert (model.position_embedding is not None) == (config.positional == "learned")


def test_shapes_and_finite(variant, tiny_model_fields):
    input_ids, attention_mask, _ = _batch()
    logits, pooled = _model(variant, tiny_model_fields)(input_ids, attention_mask)
    assert logits.shape == (8, 6)
    assert pooled.shape == (8, 16)
    assert torch.isfinite(logits).all() and torch.isfinite(pooled).all()


def test_every_parameter_gets_a_gradient(variant, tiny_model_fields):
    model = _model(variant, tiny_model_fields)
    input_ids, attention_mask, labels = _batch()
    F.cross_entropy(model(input_ids, attention_mask)[0], labels).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_loss_falls(variant, tiny_model_fields):
    model = _model(variant, tiny_model_fields).train()
    input_ids, attention_mask, labels = _batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(input_ids, attention_mask)[0], labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # starts near ln 6 = 1.79 (tiny init); memorising eight examples drives it well down
    assert losses[0] == pytest.approx(1.79, abs=0.1)
    assert losses[-1] < 0.6 * losses[0]


def test_padding_does_not_change_logits(variant, tiny_model_fields):
    model = _model(variant, tiny_model_fields).eval()
    short, long = [5, 3, 9, 2, 8], [4, 7, 6, 11, 12, 13, 14, 15, 16, 17, 18, 19]
    alone, alone_pooled = _logits(model, short)
    input_ids = torch.zeros(2, len(long), dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, seq in enumerate([short, long]):
        input_ids[row, : len(seq)] = torch.tensor(seq)
        attention_mask[row, : len(seq)] = 1
    with torch.no_grad():
        batched, batched_pooled = model(input_ids, attention_mask)
    torch.testing.assert_close(batched[0], alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(batched_pooled[0], alone_pooled, atol=1e-5, rtol=0)
    # and the batch-mate is what it is alone too
    torch.testing.assert_close(batched[1], _logits(model, long)[0], atol=1e-5, rtol=0)


SEQUENCE = [2, 3, 4, 5, 6, 7, 8, 9]
PERMUTED = [7, 3, 9, 2, 8, 4, 6, 5]


def test_permutation_sensitivity(variant, tiny_model_fields):
    model = _model(variant, tiny_model_fields)
    logits, pooled = _logits(model, SEQUENCE)
    permuted_logits, permuted_pooled = _logits(model, PERMUTED)
    if variant in ORDER_AWARE:
        # pooled vectors are layer-normed (order 1): an order-aware model moves them visibly
        assert (pooled - permuted_pooled).abs().max() > 1e-2
        assert not torch.allclose(logits, permuted_logits, atol=1e-5, rtol=0)
    else:
        torch.testing.assert_close(permuted_logits, logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(permuted_pooled, pooled, atol=1e-5, rtol=0)


def test_research_sees_reversal(tiny_model_fields):
    # a symmetric ALiBi penalty would make the encoder reversal-invariant; directional heads do not
    model = _model("research", tiny_model_fields)
    logits, pooled = _logits(model, SEQUENCE)
    reversed_logits, reversed_pooled = _logits(model, SEQUENCE[::-1])
    assert (pooled - reversed_pooled).abs().max() > 1e-2
    assert not torch.allclose(logits, reversed_logits, atol=1e-5, rtol=0)


def test_longer_than_max_positions_raises(variant, tiny_model_fields):
    model = _model(variant, {**tiny_model_fields, "max_positions": 8})
    ok = torch.ones(1, 8, dtype=torch.long)
    assert model(ok + 1, ok)[0].shape == (1, 6)
    too_long = torch.ones(1, 9, dtype=torch.long)
    with pytest.raises(RuntimeError, match="sequence length 9 exceeds the positional limit 8"):
        model(too_long + 1, too_long)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"d_model": 15, "n_heads": 2}, "divisible"),
        ({"d_model": 15, "n_heads": 3, "attention": "directional_alibi"}, "even number of heads"),
        ({"positional": "rotary"}, "unknown positional"),
        ({"attention": "flash"}, "unknown attention"),
        ({"num_classes": 1}, ">= 2"),
        ({"vocab_size": 1}, ">= 2"),
    ],
)
def test_model_config_rejects_bad_combinations(tiny_model_fields, changes, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**tiny_model_fields, **changes})


def test_unknown_variant_rejected(tiny_model_fields):
    with pytest.raises(ValueError, match="unknown variant 'nope'"):
        variant_config("nope", **tiny_model_fields)


def test_config_round_trips_through_dict(variant, tiny_model_fields):
    config = variant_config(variant, **tiny_model_fields)
    assert ModelConfig(**config.to_dict()) == config
