"""Shared tiny configs. Torch-free at import: the core tests must run without torch."""

from __future__ import annotations

import os
import tempfile

# Before anything imports bentoml: a throw-away model store, and no telemetry.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="shiftwatch-bentoml-")
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
os.environ["DO_NOT_TRACK"] = "1"

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from shiftwatch.data.synthetic import DataConfig, generate_dataset  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data_config() -> DataConfig:
    """Sizes small enough that generating every split takes milliseconds."""
    return DataConfig(train_per_domain=50, val_per_domain=10, test_per_domain=10, shift_set_size=40)


@pytest.fixture(scope="session")
def tiny_frame(tiny_data_config: DataConfig) -> pd.DataFrame:
    """Every split of the embedded dataset at tiny size (shared: treat as read-only)."""
    return generate_dataset(tiny_data_config)


@pytest.fixture
def tiny_model_fields() -> dict:
    """ModelConfig fields other than the variant switches, for a model that runs in ms."""
    return {
        "vocab_size": 20,
        "num_classes": 6,
        "d_model": 16,
        "n_heads": 2,
        "n_layers": 1,
        "d_ff": 32,
        "dropout": 0.0,  # deterministic forward passes in train mode too
        "max_positions": 32,
    }
