"""Shared tiny configs. Torch-free at import: the core tests must run without torch."""

from __future__ import annotations

import os
import tempfile

# Before anything imports bentoml: a throw-away model store, and no telemetry.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="shiftwatch-bentoml-")
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from shiftwatch.data.synthetic import DataConfig, generate_dataset  # noqa: E402

# Every test is in exactly one tier (pyproject.toml's markers; `make test-unit` runs the first).
TIERS = ("unit", "integration", "behaviour")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: a test outside the selection counts too
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Fail collection, naming them, where tests carry no tier or more than one."""
    wrong = []
    for item in items:
        tiers = sorted({mark.name for mark in item.iter_markers() if mark.name in TIERS})
        if len(tiers) != 1:
            wrong.append(f"  {item.nodeid}: {', '.join(tiers) or 'no tier'}")
    if wrong:
        raise pytest.UsageError(
            f"{len(wrong)} test(s) not in exactly one tier of {', '.join(TIERS)} (mark the module "
            "with `pytestmark = pytest.mark.<tier>`, or each test where a module mixes tiers):\n"
            + "\n".join(wrong)
        )


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


# -- tiny trained models and bundles (torch imported inside, built once per session) --

# Small enough to train in seconds, big enough to learn the task (~85% in-domain) and to
# fail on new_domain the way the full baseline does (~60%): the replay tests need both.
TINY_MODEL = {"d_model": 32, "n_heads": 2, "n_layers": 2, "d_ff": 64, "max_positions": 96}


@pytest.fixture(scope="session")
def tiny_dataset():
    """A small embedded dataset, cut to the tiny models' positional limit."""
    from shiftwatch.data import CLASS_NAMES, Dataset
    from shiftwatch.data.synthetic import content_sha256

    frame = generate_dataset(
        # val is large enough to calibrate label-free accuracy estimates on (1000 rows).
        DataConfig(train_per_domain=1500, val_per_domain=250, test_per_domain=20, shift_set_size=40)
    )
    lengths = frame["text"].str.split().map(len)
    frame = frame[lengths <= TINY_MODEL["max_positions"]].reset_index(drop=True)
    return Dataset(frame, CLASS_NAMES, "embedded", content_sha256(frame))


@pytest.fixture(scope="session")
def tiny_runs(tiny_dataset, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """variant -> run folder of a 4-epoch small model."""
    import torch

    from training.config import TrainConfig
    from training.model import VARIANTS
    from training.train import train_run

    threads = torch.get_num_threads()
    root = tmp_path_factory.mktemp("runs")
    config = TrainConfig(max_epochs=4, batch_size=64, threads=1)
    runs = {}
    for variant in VARIANTS:
        runs[variant] = root / variant / "0"
        train_run(variant, tiny_dataset, config, runs[variant], TINY_MODEL)
    torch.set_num_threads(threads)
    return runs


@pytest.fixture(scope="session")
def tiny_run(tiny_runs: dict):
    return tiny_runs["research"]


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run, tiny_dataset, tmp_path_factory: pytest.TempPathFactory):
    """The research run exported with int8 and a 300-sequence parity check."""
    from exports.bundle_export import export_bundle
    from exports.config import ExportConfig

    config = ExportConfig(parity_sequences=300, parity_max_batch=16, quantize=True, threads=1)
    return export_bundle(tiny_run, tmp_path_factory.mktemp("models"), config, dataset=tiny_dataset)


@pytest.fixture(scope="session")
def tiny_store(tiny_runs: dict, tiny_dataset, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every variant exported and registered in this session's BentoML store under the
    user-style names of `tests.servers.TINY_NAMES` (none of them a variant's name).

    Returns: variant -> (bundle, store tag).
    """
    from exports.bundle_export import export_bundle
    from exports.config import ExportConfig
    from exports.register import register_bundle
    from tests.servers import TINY_NAMES

    config = ExportConfig(parity_sequences=40, parity_max_batch=8, threads=1)
    models = tmp_path_factory.mktemp("store-models")
    store = {}
    for variant, run_dir in tiny_runs.items():
        bundle = export_bundle(
            run_dir, models, config, name=TINY_NAMES[variant], dataset=tiny_dataset
        )
        store[variant] = (bundle, register_bundle(bundle))
    return store


@pytest.fixture(scope="module")
def live_server(tiny_store: dict, tmp_path_factory: pytest.TempPathFactory):
    """A real `bentoml serve` on loopback over the tiny bundles: url, event-log dir, store."""
    from tests.servers import start_server, stop_server

    work = tmp_path_factory.mktemp("server")
    events = work / "events"
    process, url = start_server({"SHIFTWATCH_EVENT_LOG_DIR": str(events)}, work / "serve.log")
    try:
        yield {"url": url, "events": events, "store": tiny_store, "log": work / "serve.log"}
    finally:
        stop_server(process)


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    """A fresh real redis-server for one test (tests/redis_server.py)."""
    from harness import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()
