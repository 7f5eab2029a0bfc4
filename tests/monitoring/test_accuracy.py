"""Live accuracy and the ATC estimate, on hand-made arrays and on a real model's traffic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.accuracy import AtcEstimator, live_accuracy
from monitoring.monitor import ModelReference
from shiftwatch.data.synthetic import sample_scenario
from shiftwatch.encoding import softmax
from shiftwatch.inference import OnnxClassifier


def test_atc_threshold_leaves_the_reference_accuracy_above_it() -> None:
    confidence = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    correct = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1])  # 70% right
    atc = AtcEstimator.fit(confidence, correct)
    assert atc.reference_accuracy == pytest.approx(0.7)
    assert atc.threshold == pytest.approx(0.3)  # 7 of 10 confidences are above 0.3
    assert atc.estimate(confidence) == pytest.approx(0.7)
    assert atc.estimate(np.array([0.2, 0.35, 0.9, 0.1])) == pytest.approx(0.5)


def test_live_accuracy_by_domain_and_class() -> None:
    labeled = pd.DataFrame(
        {
            "label": ["a", "a", "b", "b"],
            "predicted_label": ["a", "b", "b", "b"],
            "confidence": [0.9, 0.9, 0.6, 0.6],
            "domain": ["x", "x", "y", "unknown"],
        }
    )
    live = live_accuracy(labeled)
    assert live.labeled == 4 and live.accuracy == pytest.approx(0.75)
    assert live.by_domain == {"unknown": 1.0, "x": 0.5, "y": 1.0}
    assert live.class_recall == {"a": 0.5, "b": 1.0}
    # ECE: bin of 0.9 has acc 0.5 (|0.5-0.9| * 2/4 = 0.2); bin of 0.6 has acc 1 (0.4 * 2/4 = 0.2).
    assert live.ece == pytest.approx(0.4)


@pytest.mark.slow
def test_estimate_is_within_3_points_of_realised_accuracy_in_domain(tiny_store: dict) -> None:
    bundle, _ = tiny_store["baseline"]
    reference = ModelReference.from_bundle(bundle.name, bundle)
    traffic = sample_scenario(None, 3000, seed=123)  # fresh in-domain draws, not the reference
    classifier = OnnxClassifier.from_bundle(bundle, prefer_gpu=False)
    logits, _ = classifier.predict(bundle.tokenizer.encode(list(traffic["text"])).ids)
    probs = softmax(logits)
    predicted = np.asarray(bundle.meta.labels)[probs.argmax(1)]
    realised = float((predicted == traffic["label"].to_numpy()).mean())
    estimated = reference.atc.estimate(probs.max(1))
    # 3 points is the bar; sampling noise alone on 1000 reference and 3000
    # live rows is about 1.5 points at two standard errors.
    assert abs(estimated - realised) <= 0.03, (estimated, realised)
