"""Live accuracy on hand-made rows; the label-free estimates on a real model's traffic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.accuracy import live_accuracy
from monitoring.monitor import ModelReference
from shiftwatch.data.synthetic import sample_scenario
from shiftwatch.encoding import entropy, softmax
from shiftwatch.inference import OnnxClassifier


@pytest.mark.unit
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


@pytest.mark.integration
@pytest.mark.slow
def test_estimates_are_within_3_points_of_realised_accuracy_in_domain(tiny_store: dict) -> None:
    bundle, _ = tiny_store["baseline"]
    reference = ModelReference.from_bundle(bundle.name, bundle)
    traffic = sample_scenario(None, 3000, seed=123)  # fresh in-domain draws, not the reference
    classifier = OnnxClassifier.from_bundle(bundle, prefer_gpu=False)
    logits, _ = classifier.predict(bundle.tokenizer.encode(list(traffic["text"])).ids)
    probs = softmax(logits)
    predicted = np.asarray(bundle.meta.labels)[probs.argmax(1)]
    realised = float((predicted == traffic["label"].to_numpy()).mean())
    labels = bundle.meta.labels
    window = pd.DataFrame(  # as MonitorState.window gives it: probabilities in sorted label order
        {
            "confidence": probs.max(1),
            "entropy": entropy(probs),
            "probabilities": list(probs[:, np.argsort(labels)].astype(np.float32)),
        }
    )
    assert reference.calibration.calibrated
    calibration = reference.calibration
    estimates = calibration.estimates(calibration.scores(window))
    # Sampling noise alone: the reference accuracy (1000 rows at ~85%) has a standard error
    # of 1.1 points, the live one (3000 rows) 0.6, and the threshold rests on ~150 reference
    # errors (its bootstrap 5-95% interval spans ~5 points of estimate for this model).
    for name, estimated in estimates.items():
        assert abs(estimated - realised) <= 0.04, (name, estimated, realised)
