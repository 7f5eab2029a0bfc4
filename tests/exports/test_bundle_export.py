"""Export: parity, the exact bundle layout, the reference window, int8, the model store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import bentoml
import numpy as np
import onnx
import pandas as pd
import pytest
import torch

from exports.bundle_export import export_bundle
from exports.config import ExportConfig
from exports.onnx_export import ParityError, check_parity
from exports.register import register_bundle
from shiftwatch.bundle import (
    QUANTIZED_FILE,
    REQUIRED_FILES,
    ModelBundle,
    read_bundle,
    reference_columns,
    seal_bundle,
)
from shiftwatch.data import Dataset
from shiftwatch.encoding import pad_batch
from shiftwatch.features import FEATURE_NAMES
from shiftwatch.inference import OnnxClassifier, SequenceTooLongError, open_session
from shiftwatch.manifest import MANIFEST_FILE
from shiftwatch.model_store import MANIFEST_SHA256, read_stored_bundle
from shiftwatch.reference import load_reference
from tests.conftest import TINY_MODEL
from training.checkpoint import load_run
from training.model import SequenceClassifier, variant_config

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_bundle_has_exactly_the_contract_files(tiny_bundle: ModelBundle) -> None:
    files = {*REQUIRED_FILES, QUANTIZED_FILE}
    assert {p.name for p in tiny_bundle.path.iterdir()} == {*files, MANIFEST_FILE}
    listed = json.loads((tiny_bundle.path / MANIFEST_FILE).read_text())["files"]
    assert set(listed) == files


def test_bundle_without_quantization_has_no_int8_file(
    tiny_run: Path, tiny_dataset: Dataset, tmp_path: Path
) -> None:
    config = ExportConfig(parity_sequences=50, parity_max_batch=8, threads=1)
    bundle = export_bundle(tiny_run, tmp_path, config, dataset=tiny_dataset)
    assert {p.name for p in bundle.path.iterdir()} == {*REQUIRED_FILES, MANIFEST_FILE}
    assert bundle.meta.quantization is None
    assert not list(tmp_path.glob(".research-*")), "staging folder left behind"


def test_parity_is_recorded_and_within_tolerance(tiny_bundle: ModelBundle) -> None:
    parity = tiny_bundle.meta.parity
    assert parity["passed"] and parity["sequences"] >= 300
    assert parity["max_abs_logit_diff"] <= 1e-4
    assert parity["argmax_agreement"] == 1.0
    assert parity["max_batch_independence_diff"] <= 1e-5
    assert parity["lengths"] == [1, 96]


def test_attention_is_one_fused_node_per_layer(tiny_bundle: ModelBundle) -> None:
    for path in (tiny_bundle.model_path, tiny_bundle.quantized_model_path):
        ops = [(node.domain, node.op_type) for node in onnx.load(str(path)).graph.node]
        assert ops.count(("com.microsoft", "MultiHeadAttention")) == TINY_MODEL["n_layers"]
        assert ("", "Softmax") not in ops  # no unfused attention left over


def test_onnx_matches_torch_on_real_padded_data(
    tiny_bundle: ModelBundle, tiny_run: Path, tiny_dataset: Dataset
) -> None:
    run = load_run(tiny_run)
    classifier = OnnxClassifier.from_bundle(tiny_bundle, prefer_gpu=False)
    ids = run.tokenizer.encode(list(tiny_dataset.split("test")["text"][:40])).ids
    input_ids, attention_mask = pad_batch(ids)
    assert (attention_mask == 0).mean() > 0.2  # real padding in this batch
    ort_logits, ort_pooled = classifier.run(input_ids, attention_mask)
    with torch.no_grad():
        torch_logits, torch_pooled = run.model(
            torch.from_numpy(input_ids), torch.from_numpy(attention_mask)
        )
    np.testing.assert_allclose(ort_logits, torch_logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(ort_pooled, torch_pooled.numpy(), atol=1e-4)


def test_sequences_past_the_positional_limit_fail_clearly(tiny_bundle: ModelBundle) -> None:
    classifier = OnnxClassifier(
        open_session(tiny_bundle.model_path, prefer_gpu=False), tiny_bundle.meta.max_positions
    )
    classifier.run(*pad_batch([[2] * 96]))  # at the limit: fine
    with pytest.raises(
        SequenceTooLongError, match="length 97 exceeds the model's positional limit 96"
    ):
        classifier.run(*pad_batch([[2] * 97]))


def test_parity_failure_raises(tiny_bundle: ModelBundle, tiny_run: Path) -> None:
    run = load_run(tiny_run)
    other = SequenceClassifier(variant_config("research", **{**run.config["model"]})).eval()
    classifier = OnnxClassifier(open_session(tiny_bundle.model_path, prefer_gpu=False), 96)
    with pytest.raises(ParityError, match="parity failed"):
        check_parity(other, classifier, 20, 4, 1e-4, 1e-5, seed=0)


def test_reference_window_rows_and_columns(tiny_bundle: ModelBundle, tiny_dataset: Dataset) -> None:
    reference = load_reference(tiny_bundle)
    dims = len(tiny_bundle.meta.embedding_reduction.components)
    assert list(reference.columns) == reference_columns(dims, len(tiny_bundle.meta.labels))
    val = tiny_dataset.split("val")
    assert len(reference) == len(val) == tiny_bundle.meta.reference["rows"]
    assert list(reference["label"]) == list(val["label"])
    lengths = tiny_bundle.tokenizer.encode(list(val["text"])).ids
    assert reference["length"].tolist() == [float(len(ids)) for ids in lengths]
    assert set(FEATURE_NAMES) <= set(reference.columns)
    accuracy = (reference["predicted_label"] == reference["label"]).mean()
    assert accuracy == pytest.approx(tiny_bundle.meta.reference["accuracy"])
    # The PCA is centred on the validation set: reduced embeddings have ~zero mean.
    embedding = reference[[f"embedding_{i}" for i in range(dims)]].to_numpy()
    assert np.abs(embedding.mean(axis=0)).max() < 1e-4


def test_quantized_accuracy_deltas_are_measured_on_every_eval_set(
    tiny_bundle: ModelBundle, tiny_dataset: Dataset
) -> None:
    measured = tiny_bundle.meta.quantization["accuracy"]
    assert set(measured) == set(tiny_dataset.eval_sets)
    for row in measured.values():
        assert row["delta_points"] == pytest.approx(
            100 * (row["int8_accuracy"] - row["fp32_accuracy"])
        )
        assert 0.5 <= row["argmax_agreement"] <= 1.0
    assert measured["test"]["fp32_accuracy"] == pytest.approx(
        tiny_bundle.meta.training_metrics["test"]["accuracy"]
    )


def test_a_bundle_takes_the_users_name(
    tiny_run: Path, tiny_dataset: Dataset, tmp_path: Path
) -> None:
    config = ExportConfig(parity_sequences=20, parity_max_batch=4, threads=1)
    bundle = export_bundle(tiny_run, tmp_path, config, name="sentiment-v3", dataset=tiny_dataset)
    assert bundle.path == tmp_path / "sentiment-v3"
    assert (bundle.meta.name, bundle.meta.architecture) == ("sentiment-v3", "research")
    assert register_bundle(bundle).startswith("sentiment-v3:")
    for bad in ("Sentiment", "../x", "a" * 64, "-x", "x y"):
        with pytest.raises(ValueError, match="is not valid: use lowercase letters"):
            export_bundle(tiny_run, tmp_path, config, name=bad, dataset=tiny_dataset)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sentiment-v3"]  # nothing half-written


def test_store_registration_round_trip(tiny_bundle: ModelBundle) -> None:
    tag = register_bundle(tiny_bundle)
    assert tag.startswith("research:")
    stored = bentoml.models.get(tag)
    for name in (*REQUIRED_FILES, QUANTIZED_FILE, MANIFEST_FILE):
        assert Path(stored.path_of(name)).read_bytes() == (tiny_bundle.path / name).read_bytes()
    assert stored.info.metadata[MANIFEST_SHA256] == tiny_bundle.manifest_sha256
    assert read_stored_bundle(stored).meta == tiny_bundle.meta


@pytest.fixture
def bundle_copy(tiny_bundle: ModelBundle, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle.path, tmp_path / "bundle"))


def test_missing_file_is_named(bundle_copy: Path) -> None:
    (bundle_copy / "reference.parquet").unlink()
    with pytest.raises(ValueError, match="missing reference.parquet"):
        read_bundle(bundle_copy)


def test_bad_json_is_named(bundle_copy: Path) -> None:
    (bundle_copy / "bundle.json").write_text("{not json")
    seal_bundle(bundle_copy)  # past the manifest, to the check of the file itself
    with pytest.raises(ValueError, match="bundle.json is not valid JSON"):
        read_bundle(bundle_copy)


def test_bad_field_is_named(bundle_copy: Path) -> None:
    meta = json.loads((bundle_copy / "bundle.json").read_text())
    del meta["max_positions"]
    (bundle_copy / "bundle.json").write_text(json.dumps(meta))
    seal_bundle(bundle_copy)
    with pytest.raises(ValueError, match="field 'max_positions'"):
        read_bundle(bundle_copy)


def test_tokenizer_hash_mismatch_is_named(bundle_copy: Path) -> None:
    meta = json.loads((bundle_copy / "bundle.json").read_text())
    meta["tokenizer_sha256"] = "0" * 64
    (bundle_copy / "bundle.json").write_text(json.dumps(meta))
    seal_bundle(bundle_copy)
    with pytest.raises(ValueError, match="tokenizer hash mismatch"):
        read_bundle(bundle_copy)


def test_changed_tokenizer_file_is_refused(bundle_copy: Path) -> None:
    path = bundle_copy / "tokenizer.json"
    raw = json.loads(path.read_text())
    raw["model"]["vocab"]["w1"], raw["model"]["vocab"]["w2"] = (
        raw["model"]["vocab"]["w2"],
        raw["model"]["vocab"]["w1"],
    )
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="tokenizer.json has .* manifest.json lists"):
        read_bundle(bundle_copy)
    seal_bundle(bundle_copy)  # a manifest rewritten with it: bundle.json's hash still differs
    with pytest.raises(ValueError, match="tokenizer hash mismatch"):
        read_bundle(bundle_copy)


def test_a_format_1_bundle_is_refused_with_a_reason(bundle_copy: Path) -> None:
    meta = json.loads((bundle_copy / "bundle.json").read_text())
    meta["format_version"] = 1
    (bundle_copy / "bundle.json").write_text(json.dumps(meta))
    seal_bundle(bundle_copy)
    with pytest.raises(ValueError, match="format_version 1 is not readable"):
        read_bundle(bundle_copy)


def test_onnx_outputs_off_contract_are_named(bundle_copy: Path) -> None:
    import onnx

    model = onnx.load(str(bundle_copy / "model.onnx"))
    model.graph.output[1].name = "embedding"
    for node in model.graph.node:
        node.output[:] = ["embedding" if o == "pooled" else o for o in node.output]
    onnx.save(model, str(bundle_copy / "model.onnx"))
    seal_bundle(bundle_copy)
    with pytest.raises(ValueError, match=r"no ONNX output 'pooled' to use as the embedding output"):
        read_bundle(bundle_copy)


def test_corrupt_onnx_and_extra_file_are_named(bundle_copy: Path) -> None:
    (bundle_copy / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="unexpected files: notes.txt"):
        read_bundle(bundle_copy)
    (bundle_copy / "notes.txt").unlink()
    (bundle_copy / "model.onnx").write_bytes(b"\x00garbage")
    seal_bundle(bundle_copy)
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        read_bundle(bundle_copy)


def test_reference_without_columns_is_named(bundle_copy: Path) -> None:
    pd.DataFrame({"length": [1.0]}).to_parquet(bundle_copy / "reference.parquet")
    seal_bundle(bundle_copy)
    bundle = read_bundle(bundle_copy)  # the service's reader leaves the reference alone
    with pytest.raises(ValueError, match="lacks columns"):
        load_reference(bundle)


# -- the bundle verified whole: every file against the manifest, the manifest against the store


@pytest.mark.parametrize("name", [*REQUIRED_FILES, QUANTIZED_FILE])
def test_any_changed_file_is_refused_before_it_is_parsed(bundle_copy: Path, name: str) -> None:
    """One byte changed in any file, even one `read_bundle` never parses (the reference, read
    by the monitor) or one whose change still parses: refused, naming the file."""
    path = bundle_copy / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{name} has sha256 .*manifest.json lists"):
        read_bundle(bundle_copy)


def test_a_bundle_without_manifest_is_refused_with_what_to_do(bundle_copy: Path) -> None:
    (bundle_copy / MANIFEST_FILE).unlink()
    with pytest.raises(ValueError, match="has no manifest.json .* export or import it again"):
        read_bundle(bundle_copy)


@pytest.fixture
def stored_copy(tiny_bundle: ModelBundle):
    """Registers the bundle's files with the given store metadata; the versions it made are
    deleted afterwards, so no other test meets them as `research:latest`."""
    made = []

    def register(metadata: dict) -> bentoml.Model:
        with bentoml.models.create(tiny_bundle.name, metadata=metadata) as model:
            for path in tiny_bundle.path.iterdir():
                shutil.copy2(path, model.path_of(path.name))
        made.append(model.tag)
        return bentoml.models.get(model.tag)

    yield register
    for tag in made:
        bentoml.models.delete(tag)


def test_a_stored_bundle_rewritten_with_its_manifest_is_refused(
    tiny_bundle: ModelBundle, stored_copy, tmp_path: Path
) -> None:
    """Changing a file and rewriting the manifest to match passes the folder's own check; the
    manifest's hash in the store's metadata, outside the bundle, is what catches it. The
    monitor reads the same way: the model is reported as not monitored."""
    stored = stored_copy({MANIFEST_SHA256: tiny_bundle.manifest_sha256})
    folder = Path(stored.path)
    reference = pd.read_parquet(folder / "reference.parquet")
    reference["confidence"] = 1.0  # a plausible, silently wrong reference window
    reference.to_parquet(folder / "reference.parquet", index=False)
    seal_bundle(folder)
    read_bundle(folder)  # consistent in itself
    with pytest.raises(ValueError, match="manifest.json has sha256 .*model store recorded"):
        read_stored_bundle(stored)

    from monitoring.monitor import load_references
    from shiftwatch.settings import MonitorSettings

    settings = MonitorSettings(models=[str(stored.tag)], state_path=tmp_path / "state.sqlite")
    references, errors = load_references(settings)
    assert references == {}
    assert "manifest.json has sha256" in errors["research"], errors


def test_a_bundle_registered_without_manifest_hash_is_refused(
    tiny_bundle: ModelBundle, stored_copy
) -> None:
    stored = stored_copy({"tokenizer_sha256": tiny_bundle.meta.tokenizer_sha256})
    with pytest.raises(ValueError, match="records no manifest_sha256 .*export or import it again"):
        read_stored_bundle(stored)
