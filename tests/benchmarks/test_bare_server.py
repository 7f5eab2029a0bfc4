"""The bench-service anchor answers what the service answers, on the same model."""

from __future__ import annotations

import numpy as np
import pytest
from starlette.testclient import TestClient

from benchmarks.bare_server import BUNDLE_ENV, VERSION_ENV, make_app
from shiftwatch.encoding import softmax
from shiftwatch.inference import OnnxClassifier

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_bare_server_answers_the_services_shape_with_the_models_probabilities(
    tiny_bundle, tiny_dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BUNDLE_ENV, str(tiny_bundle.path))
    monkeypatch.setenv(VERSION_ENV, "tiny:v1")
    monkeypatch.setenv("SHIFTWATCH_PREFER_GPU", "false")
    texts = list(tiny_dataset.split("test").head(4)["text"])
    body = {
        "instances": [{"tokens": t.split(), "request_id": f"r{i}"} for i, t in enumerate(texts)]
    }
    with TestClient(make_app()) as client:
        assert client.get("/readyz").status_code == 200
        answers = client.post("/predict", json=body).json()
    classifier = OnnxClassifier.from_bundle(tiny_bundle, prefer_gpu=False)
    probs = softmax(classifier.predict(tiny_bundle.tokenizer.encode(texts).ids)[0])
    labels = tiny_bundle.meta.labels
    for i, answer in enumerate(answers):
        assert answer["request_id"] == f"r{i}" and answer["model_version"] == "tiny:v1"
        assert answer["model"] == tiny_bundle.name
        assert answer["label"] == labels[int(np.argmax(probs[i]))]
        assert list(answer["probabilities"].values()) == pytest.approx(probs[i].tolist(), abs=1e-6)
