import pytest

from training.config import PROFILES, TrainConfig, profile

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_epochs": 0}, ">= 1"),
        ({"batch_size": 0}, ">= 1"),
        ({"patience": 0}, ">= 1"),
        ({"threads": 0}, ">= 1"),
        ({"lr": 0.0}, "lr"),
        ({"lr": 1.0}, "lr"),
        ({"warmup_frac": 1.0}, "warmup_frac"),
        ({"warmup_frac": -0.1}, "warmup_frac"),
    ],
)
def test_train_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


def test_train_config_round_trips_through_dict():
    config = TrainConfig(seed=3, max_train_examples=100)
    assert TrainConfig(**config.to_dict()) == config


def test_profiles():
    assert profile("quick").seeds == (0,)
    assert len(profile("paper").seeds) >= 5  # the issue asks for at least 5 seeds
    registered = PROFILES["quick"].train.max_epochs
    overridden = profile("quick", max_epochs=2, batch_size=8)
    assert (overridden.train.max_epochs, overridden.train.batch_size) == (2, 8)
    assert registered != 2
    assert PROFILES["quick"].train.max_epochs == registered  # the registry itself is untouched
    with pytest.raises(ValueError, match="unknown profile 'nope'"):
        profile("nope")
