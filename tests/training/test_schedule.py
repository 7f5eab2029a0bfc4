import pytest

from training.train import lr_factor

pytestmark = pytest.mark.unit


def test_warmup_then_decay_endpoints():
    # 100 steps, 10% warm-up: 0.1, 0.2, ..., 1.0 over steps 0-9, then (100 - step) / 90
    assert lr_factor(0, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(4, 100, 0.1) == pytest.approx(0.5)
    assert lr_factor(9, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(55, 100, 0.1) == pytest.approx(0.5)
    assert lr_factor(99, 100, 0.1) == pytest.approx(1 / 90)
    assert lr_factor(100, 100, 0.1) == 0.0
    assert lr_factor(150, 100, 0.1) == 0.0  # never negative


def test_shape_is_up_then_down():
    factors = [lr_factor(step, 40, 0.25) for step in range(40)]
    peak = factors.index(max(factors))
    assert max(factors) == pytest.approx(1.0)
    assert factors[:peak] == sorted(factors[:peak])
    assert factors[peak:] == sorted(factors[peak:], reverse=True)
    # 10 warm-up steps up to 1, then a linear decay over the other 30 (never 0 before the end)
    warmup = [(step + 1) / 10 for step in range(10)]
    assert factors == pytest.approx(warmup + [(40 - step) / 30 for step in range(10, 40)])


@pytest.mark.parametrize(("total_steps", "warmup_frac"), [(100, 0.0), (5, 0.05)])
def test_at_least_one_warmup_step(total_steps, warmup_frac):
    # warm-up rounds down but never to zero steps: the first step is already at full rate
    assert lr_factor(0, total_steps, warmup_frac) == 1.0
    assert lr_factor(total_steps - 1, total_steps, warmup_frac) == pytest.approx(
        1 / (total_steps - 1)
    )
