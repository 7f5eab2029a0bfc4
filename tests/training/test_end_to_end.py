"""A whole reproduction and the CLI, at a size CI runs in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from orchestration.cli import app
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


def verdict(all_hold: bool, some_hold: bool) -> str:
    return "supported" if all_hold else "mixed" if some_hold else "not supported"


def expected_verdicts(claims: dict, points: dict, eval_sets: list[str]) -> dict[str, str]:
    """Each claim with the verdict its stated rule gives: claims 1 and 3 from accuracies
    (points, mean over seeds) computed here; claim 2 from its own bootstrap intervals and
    key classes, which the rule combines (improved = a CI above 0)."""
    accuracy = {key: sum(values) / len(values) for key, values in points.items()}
    shift_sets = [name for name in eval_sets if name != "test"]
    variants = ("baseline", "research", "no_pe")
    degrading = {
        v: [s for s in shift_sets if accuracy[(v, "test")] - accuracy[(v, s)] >= 1.0]
        for v in variants
    }
    claim1 = verdict(
        all(len(degrading[v]) == len(shift_sets) for v in variants),
        all(degrading[v] for v in variants),
    )
    interval = claims["2"]["research_minus_baseline_points"]
    improved = [s for s in shift_sets if interval[s][1] > 0]
    key_classes = bool(claims["2"]["still_misclassified"])
    claim2 = verdict(bool(improved) and key_classes, bool(improved) or key_classes)
    gap = sum(accuracy[("baseline", s)] - accuracy[("no_pe", s)] for s in shift_sets)
    gap /= len(shift_sets)
    claim3 = verdict(gap >= 10.0, gap >= 1.0)
    return {"1": claim1, "2": claim2, "3": claim3}


@pytest.mark.integration
@pytest.mark.slow
def test_reproduce_writes_runs_figures_and_claims(small_dataset: Dataset, tmp_path: Path) -> None:
    profile = Profile("tiny", (0, 1), TrainConfig(max_epochs=2, batch_size=32, threads=1))
    results = reproduce(
        profile, small_dataset, tmp_path / "runs", tmp_path / "out", model_fields=SMALL
    )

    # Accuracy in points per (variant, eval set), mean over seeds, from the per-example
    # predictions (not from metrics.json, which the claims are computed from).
    points: dict[tuple[str, str], list[float]] = {}
    for variant in ("baseline", "research", "no_pe"):
        for seed in (0, 1):
            run_dir = tmp_path / "runs" / variant / str(seed)
            assert {p.name for p in run_dir.iterdir()} == RUN_FILES
            log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
            assert [record["epoch"] for record in log] == [1, 2]  # patience outlasts 2 epochs
            best_epoch = json.loads((run_dir / "config.json").read_text())["best_epoch"]
            best = log[best_epoch - 1]
            predictions = pd.read_parquet(run_dir / "predictions.parquet")
            for name in small_dataset.eval_sets:
                rows = predictions[predictions["set"] == name]
                assert len(rows) == len(small_dataset.split(name))
                accuracy = float((rows["label"] == rows["pred"]).mean())
                # The checkpoint is the best epoch's: its evaluation repeats that epoch's line.
                assert best[f"{name}_acc"] == pytest.approx(accuracy, abs=1e-9)
                points.setdefault((variant, name), []).append(100 * accuracy)
    out = tmp_path / "out"
    for filename in FIGURES.values():
        assert (out / filename).stat().st_size > 5_000, filename
    assert set(results["claims"]) == {"1", "2", "3"}
    verdicts = {key: claim["verdict"] for key, claim in results["claims"].items()}
    assert verdicts == expected_verdicts(results["claims"], points, small_dataset.eval_sets)
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
