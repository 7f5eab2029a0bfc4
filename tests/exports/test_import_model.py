"""Import: a Hugging Face BERT exported to ONNX elsewhere becomes a bundle, served and monitored.

The model is a tiny `BertForSequenceClassification` built from a config (no hub, no
network), trained a few steps on the module's texts with a WordPiece tokenizer trained
on them, and exported with torch's dynamo exporter, once with logits only and once with
the pooled [CLS] vector as an extra output.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import bentoml
import httpx
import numpy as np
import onnx
import pandas as pd
import pytest

from exports.import_model import import_bundle
from exports.register import register_bundle
from orchestration.replay.stack import start_monitor, start_service
from shiftwatch.bundle import REQUIRED_FILES, ModelBundle, read_bundle
from shiftwatch.classification import classification_report
from shiftwatch.encoding import pad_batch, softmax
from shiftwatch.inference import GRAPH_OPTIMIZATION, OnnxClassifier
from shiftwatch.manifest import MANIFEST_FILE
from shiftwatch.reference import load_reference
from shiftwatch.tokenizer import TextTokenizer
from tests.servers import wait_status

pytestmark = pytest.mark.integration

# transformers is imported inside the fixtures, after this: it must never reach the hub.
os.environ["HF_HUB_OFFLINE"] = "1"

LABELS = ["sports", "weather", "finance"]
MAX_LENGTH = 64  # the BERT's max_position_embeddings
VECTOR = "sentence_vector"  # the extra output: not a graph-internal name (see exports/onnx_export)
PRIMARY, SHADOW = "hf-bert", "hf-bert-plain"  # with and without the embedding output
TOPIC_WORDS = {
    "sports": "goal match team player coach score league season victory stadium referee",
    "weather": "rain storm wind sunny cloud forecast snow cold warm temperature flood",
    "finance": "market stock price bank loan profit trade invest budget money inflation",
}
DOMAIN_WORDS = {
    "news": "the report said officials today according to agency national on",
    "forum": "lol honestly guys i think anyone really thanks for this post",
}


def make_corpus(rows: int = 360, seed: int = 0) -> pd.DataFrame:
    """Short texts of real words: topic words (the label's, for 90% of rows) mixed with a
    domain's filler words."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(rows):
        label, domain = LABELS[i % 3], list(DOMAIN_WORDS)[(i // 3) % 2]
        topic_label = label if rng.random() < 0.9 else LABELS[(i + 1) % 3]  # label noise
        topic, filler = TOPIC_WORDS[topic_label].split(), DOMAIN_WORDS[domain].split()
        words = [
            rng.choice(topic) if rng.random() < 0.45 else rng.choice(filler)
            for _ in range(rng.integers(4, 16))
        ]
        split = "train" if i < 200 else "val" if i < 300 else "test"
        records.append((" ".join(words).capitalize() + ".", label, domain, split))
    return pd.DataFrame(records, columns=["text", "label", "domain", "split"])


def train_tokenizer(texts: list[str]):
    """A BERT-style WordPiece tokenizer: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3, truncating at 64."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    trainer = trainers.WordPieceTrainer(
        vocab_size=300, special_tokens=specials, show_progress=False
    )
    backend.train_from_iterator(texts, trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    backend.enable_truncation(MAX_LENGTH)
    return backend


@pytest.fixture(scope="module")
def corpus() -> pd.DataFrame:
    return make_corpus()


@pytest.fixture(scope="module")
def files(corpus: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The reference file and two tokenizer.json: one truncating at 64 ids, one not."""
    root = tmp_path_factory.mktemp("import-inputs")
    train_texts = list(corpus.loc[corpus["split"] == "train", "text"])
    corpus.to_json(root / "reference.jsonl", orient="records", lines=True)
    # One training (WordPiece training may pick another vocabulary on another run), saved
    # twice: with its max_length and without.
    backend = train_tokenizer(train_texts)
    (root / "tokenizer.json").write_text(backend.to_str())
    backend.no_truncation()
    (root / "plain.json").write_text(backend.to_str())
    return {
        "reference": root / "reference.jsonl",
        "tokenizer": root / "tokenizer.json",
        "plain_tokenizer": root / "plain.json",
    }


@pytest.fixture(scope="module")
def tokenizer(files: dict[str, Path]) -> TextTokenizer:
    return TextTokenizer.load(files["tokenizer"], max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def bert(corpus: pd.DataFrame, tokenizer: TextTokenizer):
    """A tiny BERT classifier trained 100 steps (~1 s): ~87% on val, every class predicted."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_LENGTH,
        num_labels=len(LABELS),
        pad_token_id=tokenizer.pad_id,
    )
    model = BertForSequenceClassification(config)
    train = corpus[corpus["split"] == "train"]
    input_ids, attention_mask = map(
        torch.from_numpy, pad_batch(tokenizer.encode(list(train["text"])).ids)
    )
    targets = torch.tensor([LABELS.index(label) for label in train["label"]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(100):
        batch = torch.randint(0, len(train), (32,), generator=generator)
        loss = model(
            input_ids=input_ids[batch], attention_mask=attention_mask[batch], labels=targets[batch]
        ).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def torch_outputs(bert, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities and pooled [CLS] vectors of the torch model, one padded batch."""
    import torch

    input_ids, attention_mask = map(torch.from_numpy, pad_batch(ids))
    with torch.no_grad():
        base = bert.bert(input_ids=input_ids, attention_mask=attention_mask)
        logits = bert.classifier(base.pooler_output)
    return softmax(logits.numpy()), base.pooler_output.numpy()


@pytest.fixture(scope="module")
def onnx_models(bert, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The BERT exported twice with the dynamo exporter: "plain" (logits) and "vector"
    (logits and the pooled [CLS] vector). transformers' BERT exports cleanly with it on
    torch 2.13 (SDPA attention included: plain ONNX ops, no fused Attention)."""
    import logging

    import torch

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).logits

    class LogitsAndVector(Logits):
        def forward(self, input_ids, attention_mask, token_type_ids):
            base = self.bert.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return self.bert.classifier(base.pooler_output), base.pooler_output

    root = tmp_path_factory.mktemp("onnx")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    example = torch.randint(4, bert.config.vocab_size, (2, 16))
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("seq", min=1, max=MAX_LENGTH)
    inputs = ["input_ids", "attention_mask", "token_type_ids"]
    paths = {}
    for kind, module, outputs in (
        ("plain", Logits(), ["logits"]),
        ("vector", LogitsAndVector(), ["logits", VECTOR]),
    ):
        paths[kind] = root / f"{kind}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation chatter
            torch.onnx.export(
                module,
                (example, torch.ones_like(example), torch.zeros_like(example)),
                str(paths[kind]),
                dynamo=True,
                input_names=inputs,
                output_names=outputs,
                dynamic_shapes={name: {0: batch, 1: seq} for name in inputs},
                external_data=False,
                verbose=False,
            )
    return paths


@pytest.fixture(scope="module")
def imported(
    onnx_models: dict[str, Path], files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, ModelBundle]:
    """Both models imported on the val rows: the vector one with the tokenizer's own
    max_length, the plain one with its tokenizer (no truncation) and max_length given."""
    models_dir = tmp_path_factory.mktemp("imported")
    steps: list[str] = []
    with_vector = import_bundle(
        onnx_models["vector"],
        files["tokenizer"],
        LABELS,
        files["reference"],
        models_dir,
        PRIMARY,
        embedding_output=VECTOR,
        reference_rows="split=val",
        threads=1,
        on_step=steps.append,
    )
    assert steps[-1] == "validating and publishing the bundle" and len(steps) == 3
    plain = import_bundle(
        onnx_models["plain"],
        files["plain_tokenizer"],
        LABELS,
        files["reference"],
        models_dir,
        SHADOW,
        max_length=MAX_LENGTH,
        reference_rows="split=val",
        threads=1,
    )
    return {"vector": with_vector, "plain": plain}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("kind", ["vector", "plain"])
def test_imported_bundle_reads_back_with_the_reference_of_the_torch_model(
    kind: str,
    imported: dict[str, ModelBundle],
    onnx_models: dict[str, Path],
    files: dict[str, Path],
    corpus: pd.DataFrame,
    tokenizer: TextTokenizer,
    bert,
) -> None:
    bundle = read_bundle(imported[kind].path)
    meta = bundle.meta
    assert {p.name for p in bundle.path.iterdir()} == {*REQUIRED_FILES, MANIFEST_FILE}
    assert not [p for p in bundle.path.parent.iterdir() if p.name.startswith(".")]  # no staging
    assert (meta.architecture, meta.labels, meta.parity) == ("imported", LABELS, None)
    assert meta.inputs == ["input_ids", "attention_mask", "token_type_ids"]
    assert meta.max_positions == MAX_LENGTH and meta.graph_optimization == GRAPH_OPTIMIZATION
    graph = onnx.load(str(onnx_models[kind]))
    assert meta.opset == next(o.version for o in graph.opset_import if o.domain == "")
    # Byte-for-byte copies, hashed as given.
    tokenizer_file = files["tokenizer" if kind == "vector" else "plain_tokenizer"]
    assert (bundle.path / "model.onnx").read_bytes() == onnx_models[kind].read_bytes()
    assert (bundle.path / "tokenizer.json").read_bytes() == tokenizer_file.read_bytes()
    assert meta.source == {
        "kind": "imported",
        "onnx": str(onnx_models[kind]),
        "tokenizer": str(tokenizer_file),
        "reference": str(files["reference"]),
        "reference_sha256": sha256(files["reference"]),
    }

    val = corpus[corpus["split"] == "val"].reset_index(drop=True)
    ids = tokenizer.encode(list(val["text"])).ids
    probs, _ = torch_outputs(bert, ids)
    predicted = probs.argmax(axis=1)
    truth = np.asarray([LABELS.index(label) for label in val["label"]])
    torch_accuracy = float((predicted == truth).mean())
    assert 0.7 < torch_accuracy < 1.0  # trained, not constant; the label noise is not learned
    assert set(predicted) == {0, 1, 2}
    assert meta.reference == {
        "rows": len(val),
        "accuracy": pytest.approx(torch_accuracy, abs=1e-12),
        "source": str(files["reference"]),
        "selection": "split=val",
    }
    report = classification_report(truth, predicted, probs.max(axis=1), LABELS)
    assert meta.training_metrics["reference"] == {
        "accuracy": pytest.approx(torch_accuracy, abs=1e-12),
        "macro_f1": pytest.approx(report["macro_f1"], abs=1e-12),
        "ece": pytest.approx(report["ece"], abs=1e-4),
    }
    assert meta.max_trained_length == max(len(s) for s in ids)

    reference = load_reference(bundle)
    assert list(reference["label"]) == list(val["label"])
    assert list(reference["predicted_label"]) == [LABELS[i] for i in predicted]
    np.testing.assert_allclose(reference["confidence"], probs.max(axis=1), atol=1e-4)
    embedding_columns = [c for c in reference.columns if c.startswith("embedding_")]
    if kind == "plain":
        assert meta.embedding_output is None and meta.embedding_reduction is None
        assert embedding_columns == [] and bundle.meta.embedding_dims == 0
    else:
        assert meta.embedding_output == VECTOR and bundle.meta.embedding_dims == 8
        assert embedding_columns == [f"embedding_{i}" for i in range(8)]


@pytest.mark.parametrize("kind", ["vector", "plain"])
def test_onnxruntime_probabilities_equal_the_torch_model(
    kind: str, imported: dict[str, ModelBundle], corpus: pd.DataFrame, bert
) -> None:
    bundle = imported[kind]
    texts = [*corpus.loc[corpus["split"] == "test", "text"], " ".join(["goal rain market"] * 40)]
    ids = bundle.tokenizer.encode(texts).ids
    assert all(s[0] == 2 and s[-1] == 3 for s in ids)  # [CLS] ... [SEP]
    assert len(ids[-1]) == MAX_LENGTH  # truncated at the model's limit, [SEP] kept
    assert (pad_batch(ids)[1] == 0).mean() > 0.3  # real padding in the comparison
    logits, pooled = OnnxClassifier.from_bundle(bundle, prefer_gpu=False).predict(ids)
    torch_probs, torch_pooled = torch_outputs(bert, ids)
    np.testing.assert_allclose(softmax(logits), torch_probs, atol=1e-4)
    if kind == "vector":
        np.testing.assert_allclose(pooled, torch_pooled, atol=1e-4)
    else:
        assert pooled is None


# -- refused imports: one clear error each, nothing left behind --


def edited(source: Path, target: Path, edit: Callable[[onnx.ModelProto], None], **save) -> Path:
    model = onnx.load(str(source))
    edit(model)
    onnx.save_model(model, str(target), **save)
    return target


def int32_inputs(model: onnx.ModelProto) -> None:
    for value in model.graph.input:
        value.type.tensor_type.elem_type = onnx.TensorProto.INT32


def logits_renamed(model: onnx.ModelProto) -> None:
    for node in model.graph.node:
        node.output[:] = ["scores" if name == "logits" else name for name in node.output]
    model.graph.output[0].name = "scores"


def dynamic_classes(model: onnx.ModelProto) -> None:
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "classes"


def unchanged(model: onnx.ModelProto) -> None:
    pass


def tokenizer_edited(source: Path, target: Path, edit: Callable[[dict], None]) -> Path:
    raw = json.loads(source.read_text())
    edit(raw)
    target.write_text(json.dumps(raw))
    return target


def lengthening_normalizer(raw: dict) -> None:
    """The finding's normaliser: each "a" becomes 10,000 characters (1.6 GB for one request)."""
    replace = {"type": "Replace", "pattern": {"String": "a"}, "content": "x" * 10_000}
    raw["normalizer"] = {"type": "Sequence", "normalizers": [raw["normalizer"], replace]}


def huge_max_length(raw: dict) -> None:
    raw["truncation"]["max_length"] = 2_000_000_000


# case -> (overrides of the good import's arguments, the error's text)
REFUSALS = {
    "label count vs static logits dim": ({"labels": LABELS[:2]}, "'logits' has 3 classes, but 2"),
    "label count found by running": (
        {"onnx": "dynamic_classes", "labels": [*LABELS, "other"]},
        r"gives logits of shape \[1, 3\] for one sequence, but 4 labels",
    ),
    "duplicate labels": ({"labels": ["sports", "sports", "finance"]}, r"\['sports'\] appear more"),
    "reference label not among labels": (
        {"labels": ["sports", "weather", "economy"]},
        r"not among the model's labels .*: \['finance'\]",
    ),
    "invalid name": ({"name": "HF BERT/../x"}, "model name 'HF BERT/../x' is not valid"),
    "int32 inputs": (
        {"onnx": "int32"},
        r"ONNX input 'input_ids' is int32 of rank 2; expected int64 \[batch, seq\]",
    ),
    "missing logits": ({"onnx": "no_logits"}, r"no output named 'logits' .*\['scores'\]"),
    "missing embedding output": (
        {"embedding_output": "pooled"},
        r"no ONNX output 'pooled' to use as the embedding output .*\['logits'\]",
    ),
    "tokenizer without max_length": (
        {"tokenizer": "plain_tokenizer", "max_length": None},
        "plain.json sets no truncation max_length: .*--max-length",
    ),
    "max_length above the model's positions": (
        {"max_length": 128},
        "onnxruntime failed on a padded batch of 128 ids, the max_length",
    ),
    "external data": ({"onnx": "external"}, r"external data files \['weights.bin'\]"),
    "tokenizer normaliser lengthening text": (
        {"tokenizer": "lengthening"},
        r"normalizer.normalizers\[1\]: Replace of .* by 10000 characters could lengthen text",
    ),
    "tokenizer max_length of two billion": (
        {"tokenizer": "huge_max_length"},
        r"truncation.max_length 2000000000 is over 8192 token ids",
    ),
    "max_length over the limit": ({"max_length": 100_000}, "max_length 100000 is over 8192"),
    "selection matching nothing": ({"reference_rows": "split=ood"}, "no row has split=ood"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_bad_imports_fail_clearly_and_leave_nothing(
    case: str, onnx_models: dict[str, Path], files: dict[str, Path], tmp_path: Path
) -> None:
    overrides, message = REFUSALS[case]
    plain = onnx_models["plain"]
    variants = {
        "good": lambda: plain,
        "int32": lambda: edited(plain, tmp_path / "int32.onnx", int32_inputs),
        "no_logits": lambda: edited(plain, tmp_path / "scores.onnx", logits_renamed),
        "dynamic_classes": lambda: edited(plain, tmp_path / "dynamic.onnx", dynamic_classes),
        "external": lambda: edited(
            plain,
            tmp_path / "external.onnx",
            unchanged,
            save_as_external_data=True,
            location="weights.bin",
            size_threshold=0,
        ),
    }
    tokenizers = {
        "tokenizer": lambda: files["tokenizer"],
        "plain_tokenizer": lambda: files["plain_tokenizer"],
        "lengthening": lambda: tokenizer_edited(
            files["tokenizer"], tmp_path / "lengthening.json", lengthening_normalizer
        ),
        "huge_max_length": lambda: tokenizer_edited(
            files["tokenizer"], tmp_path / "huge.json", huge_max_length
        ),
    }
    arguments = {
        "onnx": "good",
        "tokenizer": "tokenizer",
        "labels": LABELS,
        "name": "refused",
        "max_length": None,
        "embedding_output": None,
        "reference_rows": "split=val",
    } | overrides
    models_dir = tmp_path / "models"
    with pytest.raises(ValueError, match=message):
        import_bundle(
            variants[arguments["onnx"]](),
            tokenizers[arguments["tokenizer"]](),
            arguments["labels"],
            files["reference"],
            models_dir,
            arguments["name"],
            max_length=arguments["max_length"],
            embedding_output=arguments["embedding_output"],
            reference_rows=arguments["reference_rows"],
            threads=1,
        )
    assert not models_dir.exists() or list(models_dir.iterdir()) == []


# -- end to end: the real service and monitor over the imported bundles --


def metric_value(metrics: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", metrics, re.MULTILINE)
    assert match, f"{series} not exported"
    return float(match.group(1))


@pytest.mark.slow
def test_imported_models_are_served_and_monitored(
    imported: dict[str, ModelBundle], corpus: pd.DataFrame, bert, tmp_path: Path
) -> None:
    for bundle in imported.values():
        register_bundle(bundle)
    traffic = pd.concat([corpus[corpus["split"] == "test"], corpus[corpus["split"] == "train"]])
    traffic = traffic.iloc[:48].reset_index(drop=True)  # >= 30: a drift verdict
    labeled = 36
    service = start_service(
        {
            "SHIFTWATCH_PRIMARY_MODEL": PRIMARY,
            "SHIFTWATCH_SHADOW_MODELS": SHADOW,
            "SHIFTWATCH_EVENT_LOG_DIR": str(tmp_path / "events"),
            "SHIFTWATCH_MAX_TOKENS": str(MAX_LENGTH),
            "SHIFTWATCH_SHUTDOWN_DRAIN_SECONDS": "0",
        },
        tmp_path / "service.log",
    )
    monitor = None
    try:
        monitor = start_monitor(
            {
                "SHIFTWATCH_MONITOR_EVENT_LOG_DIR": str(tmp_path / "events"),
                "SHIFTWATCH_MONITOR_STATE_PATH": str(tmp_path / "state.sqlite"),
                "SHIFTWATCH_MONITOR_MODELS_DIR": str(imported["vector"].path.parent),
                "SHIFTWATCH_MONITOR_MODELS": f"{PRIMARY},{SHADOW}",
                "SHIFTWATCH_MONITOR_RECOMPUTE_SECONDS": "0.5",
                "SHIFTWATCH_MONITOR_POLL_SECONDS": "0.2",
                "SHIFTWATCH_MONITOR_WINDOW_SIZE": "64",
            },
            tmp_path / "monitor.log",
        )
        catalog = httpx.get(service.url + "/models").json()
        assert catalog["primary"] == PRIMARY
        assert [
            (m["name"], m["role"], m["architecture"], m["labels"], m["embedding"])
            for m in catalog["models"]
        ] == [
            (PRIMARY, "primary", "imported", LABELS, True),
            (SHADOW, "shadow", "imported", LABELS, False),
        ]

        answers = []
        for start in range(0, len(traffic), 16):
            rows = traffic.iloc[start : start + 16]
            instances = [
                {"text": text, "domain": domain, "request_id": f"imp-{start + k}"}
                for k, (text, domain) in enumerate(zip(rows["text"], rows["domain"], strict=True))
            ]
            response = httpx.post(service.url + "/predict", json={"instances": instances})
            assert response.status_code == 200, response.text
            answers += response.json()
        probs, pooled = torch_outputs(
            bert, imported["vector"].tokenizer.encode(list(traffic["text"])).ids
        )
        served = np.asarray([[a["probabilities"][label] for label in LABELS] for a in answers])
        np.testing.assert_allclose(served, probs, atol=1e-4)
        assert {a["model"] for a in answers} == {PRIMARY}

        feedback = [
            {"request_id": f"imp-{i}", "label": label}
            for i, label in enumerate(traffic["label"][:labeled])
        ]
        receipt = httpx.post(service.url + "/feedback", json={"labels": feedback}).json()
        assert receipt["accepted"] == labeled
        truth = traffic["label"][:labeled].to_numpy()
        expected = {
            # The primary's answers, and the shadow (same weights) as torch predicts it.
            PRIMARY: float(np.mean(np.asarray([a["label"] for a in answers[:labeled]]) == truth)),
            SHADOW: float(np.mean(np.asarray(LABELS)[probs[:labeled].argmax(1)] == truth)),
        }

        def caught_up(status: dict) -> bool:
            counters = status["counters"]
            return (
                counters.get("events_prediction", 0) == len(traffic)
                and counters.get("labels_matched", 0) == labeled
                and status["computed_events"] >= len(traffic) + labeled
            )

        status = wait_status(monitor.url, caught_up)
        assert caught_up(status), status["counters"]
        assert status["reference_errors"] == {}
        for name, bundle in ((PRIMARY, imported["vector"]), (SHADOW, imported["plain"])):
            window = status["models"][name]
            assert window["rows"] == len(traffic) and window["live"]["labeled"] == labeled
            assert window["live"]["accuracy"] == pytest.approx(expected[name])
            assert window["reference_accuracy"] == pytest.approx(bundle.meta.reference["accuracy"])
            assert window["drift"] is not None and "length" in window["drift"]["columns"]
        shadow, primary = status["models"][SHADOW], status["models"][PRIMARY]
        assert shadow["drift"]["embedding"] is None
        assert shadow["notes"] == [
            "embedding drift not computed: the model has no embedding output"
        ]
        assert primary["notes"] == []
        assert primary["drift"]["embedding"]["method"] == "euclidean distance (bootstrap)"
        # Evidently's score: the euclidean distance between the reference's and the window's
        # mean embedding, the window's being the torch model's pooled vectors, reduced.
        reduced = imported["vector"].meta.embedding_reduction.apply(pooled)
        reference = load_reference(imported["vector"])
        columns = [f"embedding_{i}" for i in range(reduced.shape[1])]
        distance = np.linalg.norm(reference[columns].to_numpy().mean(0) - reduced.mean(0))
        assert primary["drift"]["embedding"]["score"] == pytest.approx(distance, abs=1e-3)

        metrics = httpx.get(monitor.url + "/metrics").text
        for name in (PRIMARY, SHADOW):
            series = f'shiftwatch_live_accuracy_ratio{{model="{name}"}}'
            assert metric_value(metrics, series) == pytest.approx(expected[name])
    finally:
        if monitor is not None:
            monitor.stop()
        service.stop()


def test_the_import_command_registers_the_bundle_or_says_what_is_wrong(
    onnx_models: dict[str, Path], files: dict[str, Path], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from orchestration.cli import app

    args = ["import", "--onnx", str(onnx_models["vector"]), "--tokenizer", str(files["tokenizer"])]
    args += ["--reference", str(files["reference"]), "--reference-rows", "split=val"]
    args += ["--models-dir", str(tmp_path), "--embedding-output", VECTOR]
    labels = tmp_path.parent / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    result = CliRunner().invoke(app, [*args, "--labels", f"@{labels}", "--name", "cli-import"])
    assert result.exit_code == 0, result.output
    tag = result.output.strip().splitlines()[-1]
    assert tag.startswith("cli-import:")
    assert read_bundle(bentoml.models.get(tag).path).meta.labels == list(LABELS)

    wrong = CliRunner().invoke(app, [*args, "--labels", "a,b", "--name", "cli-import-2"])
    assert wrong.exit_code == 2
    assert "2 labels were given" in " ".join(wrong.output.split())
    assert not (tmp_path / "cli-import-2").exists()
