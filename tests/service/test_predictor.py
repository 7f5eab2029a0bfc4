"""Predictor without a server: encoding, batching equivalence, shadows, request limits."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from service.predictor import Predictor, StartupError
from service.schemas import Instance, Instances
from shiftwatch.inference import OnnxClassifier, open_session
from shiftwatch.settings import ServiceSettings, service_settings

pytestmark = pytest.mark.slow


@pytest.fixture
def predictor(tiny_store: dict, tiny_settings: None) -> Predictor:
    return Predictor(tiny_store, service_settings())


def instances(tiny_dataset, n: int) -> list[Instance]:
    frame = tiny_dataset.split("test").head(n)
    return [
        Instance(tokens=list(t), domain=d)
        for t, d in zip(frame["tokens"], frame["domain"], strict=True)
    ]


def test_tokens_and_text_encode_alike(predictor: Predictor) -> None:
    by_tokens, _ = predictor.predict([Instance(tokens=["mark_a", "w1", "mark_b", "mark_c"])])
    by_text, _ = predictor.predict([Instance(text="mark_a  w1\tmark_b mark_c")])
    assert by_tokens[0].probabilities == pytest.approx(by_text[0].probabilities, abs=1e-7)


def test_batched_equals_one_by_one(predictor: Predictor, tiny_dataset) -> None:
    batch = instances(tiny_dataset, 30)
    together, _ = predictor.predict(batch)
    for instance, answer in zip(batch, together, strict=True):
        alone, _ = predictor.predict([instance])
        assert alone[0].label == answer.label
        assert alone[0].probabilities == pytest.approx(answer.probabilities, abs=1e-6)


def test_answers_equal_direct_onnxruntime(
    predictor: Predictor, tiny_store: dict, tiny_dataset
) -> None:
    bundle, _ = tiny_store["baseline"]
    batch = instances(tiny_dataset, 12)
    answers, _ = predictor.predict(batch)
    classifier = OnnxClassifier(
        open_session(bundle.model_path, prefer_gpu=False), bundle.meta.max_positions
    )
    for instance, answer in zip(batch, answers, strict=True):
        logits, _ = classifier.run(*[a for a in _pad(bundle.vocab.encode(instance.sequence))])
        probs = np.exp(logits[0] - logits[0].max())
        probs /= probs.sum()
        assert answer.label == bundle.meta.labels[int(probs.argmax())]
        assert list(answer.probabilities.values()) == pytest.approx(probs.tolist(), abs=1e-6)


def _pad(ids: list[int]):
    from shiftwatch.encoding import pad_batch

    return pad_batch([ids])


def test_shadows_go_to_events_only(predictor: Predictor, tiny_dataset) -> None:
    answers, events = predictor.predict(instances(tiny_dataset, 5))
    assert {a.model for a in answers} == {"baseline"}
    for answer, event in zip(answers, events, strict=True):
        assert event.request_id == answer.request_id and event.model == "baseline"
        assert [s.model for s in event.shadows] == ["research", "no_pe"]
        assert event.features["length"] > 0 and len(event.embedding) > 0
        assert event.domain is not None


def test_named_model_answers_without_shadows(predictor: Predictor) -> None:
    answers, events = predictor.predict([Instance(text="kw0_1 w2", model="research")])
    assert answers[0].model == "research" and events[0].shadows == []


def test_max_tokens_above_a_model_limit_stops_startup(tiny_store: dict) -> None:
    with pytest.raises(StartupError, match="SHIFTWATCH_MAX_TOKENS=512 exceeds model 'baseline'"):
        Predictor(tiny_store, ServiceSettings(max_tokens=512))


LIMIT_CASES = [
    ({"tokens": []}, "tokens: the sequence is empty"),
    ({"text": "   "}, "tokens: the sequence is empty"),
    ({"tokens": ["a"] * 97}, "97 tokens exceeds the limit of 96 (SHIFTWATCH_MAX_TOKENS"),
    ({"tokens": ["x" * 33]}, "33 characters exceeds the limit of 32 (SHIFTWATCH_MAX_TOKEN_CHARS)"),
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
