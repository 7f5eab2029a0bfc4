"""A tiny trained run and its exported bundle, shared by the export tests (built once)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from exports.bundle_export import export_bundle
from exports.config import ExportConfig
from shiftwatch.bundle import ModelBundle
from shiftwatch.data import CLASS_NAMES, Dataset
from shiftwatch.data.synthetic import DataConfig, content_sha256, generate_dataset
from training.config import TrainConfig
from training.train import train_run

TINY_MODEL = {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32, "max_positions": 96}
TINY_EXPORT = ExportConfig(parity_sequences=300, parity_max_batch=16, quantize=True, threads=1)


@pytest.fixture(scope="session")
def tiny_dataset() -> Dataset:
    frame = generate_dataset(
        DataConfig(train_per_domain=80, val_per_domain=20, test_per_domain=20, shift_set_size=40)
    )
    frame = frame[frame["tokens"].map(len) <= TINY_MODEL["max_positions"]].reset_index(drop=True)
    return Dataset(frame, CLASS_NAMES, "embedded", content_sha256(frame))


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    threads = torch.get_num_threads()
    run_dir = tmp_path_factory.mktemp("runs") / "research" / "0"
    train_run(
        "research",
        tiny_dataset,
        TrainConfig(max_epochs=2, batch_size=32, threads=1),
        run_dir,
        TINY_MODEL,
    )
    torch.set_num_threads(threads)
    return run_dir


@pytest.fixture(scope="session")
def tiny_bundle(
    tiny_run: Path, tiny_dataset: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> ModelBundle:
    return export_bundle(
        tiny_run, tmp_path_factory.mktemp("models"), TINY_EXPORT, dataset=tiny_dataset
    )
