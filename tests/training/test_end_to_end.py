"""A whole reproduction and the CLI, at a size CI runs in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from shiftwatch.cli import app
from shiftwatch.data import CLASS_NAMES, Dataset
from shiftwatch.data.synthetic import DataConfig, content_sha256, generate_dataset
from shiftwatch.tokenizer import TextTokenizer
from training.batches import encode_split, predict
from training.config import Profile, TrainConfig
from training.model import ModelConfig, SequenceClassifier
from training.reproduce import FIGURES, reproduce

RUN_FILES = {
    "checkpoint.pt",
    "config.json",
    "tokenizer.json",
    "log.jsonl",
    "metrics.json",
    "predictions.parquet",
}
SMALL = {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32}


@pytest.fixture(scope="module")
def small_dataset() -> Dataset:
    frame = generate_dataset(
        DataConfig(train_per_domain=60, val_per_domain=15, test_per_domain=15, shift_set_size=40)
    )
    return Dataset(frame, CLASS_NAMES, "embedded", content_sha256(frame))


@pytest.mark.integration
@pytest.mark.slow
def test_reproduce_writes_runs_figures_and_claims(small_dataset: Dataset, tmp_path: Path) -> None:
    profile = Profile("tiny", (0, 1), TrainConfig(max_epochs=2, batch_size=32, threads=1))
    results = reproduce(
        profile, small_dataset, tmp_path / "runs", tmp_path / "out", model_fields=SMALL
    )

    for variant in ("baseline", "research", "no_pe"):
        for seed in (0, 1):
            run_dir = tmp_path / "runs" / variant / str(seed)
            assert {p.name for p in run_dir.iterdir()} == RUN_FILES
            log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
            assert 1 <= len(log) <= 2
            for name in small_dataset.eval_sets:
                assert 0.0 <= log[-1][f"{name}_acc"] <= 1.0
    out = tmp_path / "out"
    for filename in FIGURES.values():
        assert (out / filename).stat().st_size > 5_000, filename
    assert set(results["claims"]) == {"1", "2", "3"}
    for claim in results["claims"].values():
        assert claim["verdict"] in {"supported", "mixed", "not supported"}
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["accuracy"] == results["accuracy"]
    markdown = (out / "results.md").read_text()
    assert "## The study's claims" in markdown and "fig2_confusion" in markdown
    assert len(results["accuracy"]) == 3 * len(small_dataset.eval_sets)


@pytest.mark.integration
@pytest.mark.slow
def test_run_folder_rebuilds_the_model_and_its_metrics(
    small_dataset: Dataset, tmp_path: Path
) -> None:
    runner = CliRunner()
    small_dataset.frame.to_parquet(tmp_path / "rows.parquet")
    result = runner.invoke(
        app,
        [
            "train",
            "--variant",
            "research",
            "--data",
            str(tmp_path / "rows.parquet"),
            "--runs-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "rows" / "research" / "0"  # RUNS/<dataset>/<variant>/<seed>
    config = json.loads((run_dir / "config.json").read_text())
    tokenizer = TextTokenizer.load(run_dir / "tokenizer.json", config["tokenizer_sha256"])
    # The file has a text column: raw text, so the run trained a subword tokenizer.
    assert config["data"]["input_kind"] == "text" and tokenizer.kind == "BPE"
    model = SequenceClassifier(ModelConfig(**config["model"]))
    model.load_state_dict(torch.load(run_dir / "checkpoint.pt", weights_only=True))
    test = encode_split(small_dataset.split("test"), tokenizer, config["data"]["labels"])
    logits, _ = predict(model, test.ids)
    accuracy = float((logits.argmax(1) == test.labels).mean())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["test"]["accuracy"], abs=1e-9)


@pytest.mark.unit
def test_train_command_rejects_bad_user_data_naming_the_column(tmp_path: Path) -> None:
    pd.DataFrame({"tokens": ["a b", "c d"], "domain": ["x", "y"]}).to_csv(
        tmp_path / "bad.csv", index=False
    )
    result = CliRunner().invoke(
        app, ["train", "--variant", "baseline", "--data", str(tmp_path / "bad.csv")]
    )
    assert result.exit_code == 2
    assert "column 'label' is missing" in result.output


@pytest.mark.unit
def test_train_command_rejects_unknown_variant(small_dataset: Dataset, tmp_path: Path) -> None:
    small_dataset.frame.to_parquet(tmp_path / "rows.parquet")
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--variant",
            "nope",
            "--data",
            str(tmp_path / "rows.parquet"),
            "--runs-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert "unknown variant 'nope'" in result.output


@pytest.mark.unit
def test_data_command_writes_a_loadable_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["data", "--out", str(tmp_path / "d"), "--seed", "3"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 3
    assert manifest["sizes"]["train"] == 4 * DataConfig().train_per_domain
