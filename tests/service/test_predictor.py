"""Predictor without a server: encoding, batching equivalence, shadows, request limits."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import REGISTRY
from pydantic import TypeAdapter, ValidationError

from service.predictor import Predictor, StartupError
from service.schemas import Instance, Instances
from shiftwatch.events import PredictionEvent
from shiftwatch.inference import OnnxClassifier
from shiftwatch.settings import service_settings
from tests.servers import TINY_NAMES

pytestmark = [pytest.mark.slow, pytest.mark.integration]
PRIMARY, RESEARCH, NO_PE = TINY_NAMES["baseline"], TINY_NAMES["research"], TINY_NAMES["no_pe"]


def by_name(tiny_store: dict) -> dict:
    """name -> (bundle, store tag), as the service hands bundles to the Predictor."""
    return {bundle.name: (bundle, tag) for bundle, tag in tiny_store.values()}


@pytest.fixture
def predictor(tiny_store: dict, tiny_settings: None) -> Predictor:
    return Predictor(by_name(tiny_store), service_settings())


def served(predictor: Predictor, batch: list[Instance]) -> tuple[list, list[PredictionEvent]]:
    """The answers and every complete event, the shadows run as the service's worker runs them."""
    answers, events, shadow_work = predictor.predict(batch)
    return answers, events + (predictor.run_shadows(shadow_work) if shadow_work else [])


def instances(tiny_dataset, n: int) -> list[Instance]:
    frame = tiny_dataset.split("test").head(n)
    return [
        Instance(tokens=t.split(), domain=d)
        for t, d in zip(frame["text"], frame["domain"], strict=True)
    ]


def test_tokens_and_text_encode_alike(predictor: Predictor) -> None:
    by_tokens, _ = served(predictor, [Instance(tokens=["mark_a", "w1", "mark_b", "mark_c"])])
    by_text, _ = served(predictor, [Instance(text="mark_a  w1\tmark_b mark_c")])
    assert by_tokens[0].probabilities == pytest.approx(by_text[0].probabilities, abs=1e-7)


def test_batched_equals_one_by_one(predictor: Predictor, tiny_dataset) -> None:
    batch = instances(tiny_dataset, 30)
    together, _ = served(predictor, batch)
    for instance, answer in zip(batch, together, strict=True):
        alone, _ = served(predictor, [instance])
        assert alone[0].label == answer.label
        assert alone[0].probabilities == pytest.approx(answer.probabilities, abs=1e-6)


def test_answers_equal_direct_onnxruntime(
    predictor: Predictor, tiny_store: dict, tiny_dataset
) -> None:
    bundle, _ = tiny_store["baseline"]
    batch = instances(tiny_dataset, 12)
    answers, _ = served(predictor, batch)
    classifier = OnnxClassifier.from_bundle(bundle, prefer_gpu=False)
    for instance, answer in zip(batch, answers, strict=True):
        ids = bundle.tokenizer.encode([instance.sequence]).ids[0]
        logits, _ = classifier.run(*_pad(ids))
        probs = np.exp(logits[0] - logits[0].max())
        probs /= probs.sum()
        assert answer.label == bundle.meta.labels[int(probs.argmax())]
        assert list(answer.probabilities.values()) == pytest.approx(probs.tolist(), abs=1e-6)


def _pad(ids: list[int]):
    from shiftwatch.encoding import pad_batch

    return pad_batch([ids])


def test_shadows_go_to_events_only(predictor: Predictor, tiny_dataset) -> None:
    batch = instances(tiny_dataset, 5)
    answers, ready, shadow_work = predictor.predict(batch)
    assert {a.model for a in answers} == {PRIMARY}
    # The answers are complete before any shadow runs: the primary's events wait for them.
    assert ready == [] and shadow_work is not None
    assert all(e.shadows == [] for e in shadow_work.events)
    events = predictor.run_shadows(shadow_work)
    for instance, answer, event in zip(batch, answers, events, strict=True):
        assert event.request_id == answer.request_id and event.model == PRIMARY
        assert [s.model for s in event.shadows] == [RESEARCH, NO_PE]
        assert event.skipped_shadows == []
        # Word-level tokens under the 96-token limit: one id per token, none cut.
        assert event.features["length"] == len(instance.tokens)
        # tiny_store exports with ExportConfig's default of 8 PCA components.
        assert len(event.embedding) == 8
        assert event.domain == instance.domain


def test_named_model_answers_without_shadows(predictor: Predictor) -> None:
    answers, events, shadow_work = predictor.predict([Instance(text="kw0_1 w2", model=RESEARCH)])
    assert answers[0].model == RESEARCH and shadow_work is None
    assert events[0].shadows == [] and events[0].skipped_shadows == []


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_200_character_token_is_answered_and_counted(predictor: Predictor) -> None:
    before = counter("shiftwatch_input_long_words_total")
    answers, events = served(predictor, [Instance(tokens=["mark_a", "w" * 200, "mark_b"])])
    assert answers[0].label in predictor.primary.labels
    assert events[0].features["length"] == 3.0  # clipped to 100 characters, one <unk>
    assert counter("shiftwatch_input_long_words_total") == before + 1


def test_a_sequence_past_the_positional_limit_is_cut_there_and_counted(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIFTWATCH_MAX_TOKENS", "200")  # a request limit above the models' 96
    service_settings.cache_clear()
    before = counter("shiftwatch_input_truncated_total", model=PRIMARY)
    answers, events = served(predictor, [Instance(tokens=["w1"] * 96 + ["w2"] * 4)])
    assert events[0].features["length"] == 96.0  # the tiny models' limit
    cut, _ = served(predictor, [Instance(tokens=["w1"] * 96)])
    assert answers[0].probabilities == pytest.approx(cut[0].probabilities, abs=1e-6)
    assert counter("shiftwatch_input_truncated_total", model=PRIMARY) == before + 1


def test_a_bundle_under_another_name_stops_startup(tiny_store: dict, tiny_settings: None) -> None:
    bundles = by_name(tiny_store)
    bundles[PRIMARY] = bundles[RESEARCH]
    with pytest.raises(StartupError, match=f"model '{PRIMARY}': its bundle is named '{RESEARCH}'"):
        Predictor(bundles, service_settings())


LIMIT_CASES = [
    ({"tokens": []}, "tokens: the sequence is empty"),
    ({"tokens": ["", " "]}, "tokens: the sequence is empty"),
    ({"text": "   "}, "text: the sequence is empty"),
    (
        {"tokens": ["a"] * 97},
        "97 whitespace-separated tokens exceeds the limit of 96 (SHIFTWATCH_MAX_TOKENS",
    ),
    ({"tokens": ["x" * 1000] * 3}, "3002 characters exceeds the limit of 2000"),
    (
        {"text": "a " * 1001},
        "2002 characters exceeds the limit of 2000 (SHIFTWATCH_MAX_TEXT_CHARS)",
    ),
    ({"text": "a", "model": "gpt"}, "model: 'gpt' is not loaded"),
    ({"text": "a", "tokens": ["a"]}, "exactly one of 'tokens' or 'text'"),
    ({}, "exactly one of 'tokens' or 'text'"),
    ({"text": "a", "request_id": "r" * 129}, "request_id: must be 1 to 128 characters"),
    ({"text": "a", "colour": "red"}, "Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("body", "message"), LIMIT_CASES)
def test_instance_limits_name_the_field_and_limit(
    tiny_settings: None, body: dict, message: str
) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Instance.model_validate(body)


def test_instance_count_limits(tiny_settings: None) -> None:
    adapter = TypeAdapter(Instances)
    assert len(adapter.validate_python([{"text": "a"}] * 8)) == 8
    with pytest.raises(
        ValidationError, match=r"9 instances exceeds the limit of 8 \(SHIFTWATCH_MAX_INSTANCES\)"
    ):
        adapter.validate_python([{"text": "a"}] * 9)
    with pytest.raises(ValidationError, match="at least 1 instance"):
        adapter.validate_python([])


def test_request_id_generated_when_absent(tiny_settings: None) -> None:
    first, second = Instance(text="a"), Instance(text="a")
    assert first.request_id and second.request_id and first.request_id != second.request_id
    assert Instance(text="a", request_id="mine").request_id == "mine"
