import math

import numpy as np
import pytest

from shiftwatch.classification import (
    classification_report,
    confusion_matrix,
    expected_calibration_error,
    macro_f1,
    per_class_recall,
)

pytestmark = pytest.mark.unit

Y_TRUE = np.array([0, 0, 1, 2, 2, 2])
Y_PRED = np.array([0, 1, 1, 2, 2, 0])
# rows = true class, columns = predicted class
MATRIX = [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_confusion_matrix():
    matrix = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert matrix.tolist() == MATRIX
    assert matrix.dtype == np.int64


def test_confusion_matrix_counts_repeats():
    # np.add.at, not fancy-index assignment: repeated (true, pred) pairs all count
    assert confusion_matrix([1, 1, 1], [0, 0, 0], 2).tolist() == [[0, 0], [3, 0]]


def test_per_class_recall():
    recall = per_class_recall(confusion_matrix(Y_TRUE, Y_PRED, 4))
    # class 0: 1/2, class 1: 1/1, class 2: 2/3, class 3: no examples
    np.testing.assert_allclose(recall[:3], [1 / 2, 1.0, 2 / 3])
    assert np.isnan(recall[3])


def test_macro_f1():
    # F1 = 2tp / (2tp + fp + fn): class 0: 2/(2+1+1) = 1/2, class 1: 2/(2+1+0) = 2/3,
    # class 2: 4/(4+0+1) = 4/5 -> mean (1/2 + 2/3 + 4/5) / 3 = 59/90
    assert macro_f1(np.array(MATRIX)) == pytest.approx(59 / 90)
    # a class absent from truth and predictions does not drag the mean down
    assert macro_f1(confusion_matrix(Y_TRUE, Y_PRED, 5)) == pytest.approx(59 / 90)


def test_macro_f1_counts_predicted_only_class_as_zero():
    # class 1 is predicted but never true: F1 0, so mean over classes 0 and 1
    # class 0: tp 1, fn 1 -> 2/3
    assert macro_f1(confusion_matrix([0, 0], [0, 1], 3)) == pytest.approx((2 / 3 + 0) / 2)


def test_macro_f1_empty_is_nan():
    assert math.isnan(macro_f1(np.zeros((3, 3), dtype=np.int64)))


def test_ece_two_bins():
    # bins (.., 0.5] and (0.5, 1]: 0.5 falls in the lower bin.
    # low: conf 0.2, 0.4, 0.5 (mean 11/30), acc 2/3 -> |2/3 - 11/30| * 3/5 = 0.3 * 0.6 = 0.18
    # high: conf 0.9, 0.8 (mean 0.85), acc 1/2 -> 0.35 * 2/5 = 0.14
    confidence = np.array([0.2, 0.4, 0.5, 0.9, 0.8])
    correct = np.array([0, 1, 1, 1, 0])
    assert expected_calibration_error(confidence, correct, bins=2) == pytest.approx(0.32)


def test_ece_perfect_and_worst():
    assert expected_calibration_error(np.ones(4), np.ones(4, dtype=bool)) == 0.0
    assert expected_calibration_error(np.ones(4), np.zeros(4, dtype=bool)) == pytest.approx(1.0)
    # confidence 0 lands in the first bin rather than out of range
    assert expected_calibration_error(np.array([0.0, 0.0]), np.array([0, 1])) == pytest.approx(0.5)


def test_ece_empty_is_nan():
    assert math.isnan(expected_calibration_error(np.array([]), np.array([])))


def test_classification_report():
    domains = ["a", "a", "b", "b", "b", "a"]
    # correct: T F T T T F; one confidence 0.75 everywhere -> one bin, |4/6 - 0.75| = 1/12
    report = classification_report(
        Y_TRUE, Y_PRED, np.full(6, 0.75), labels=["x", "y", "z", "w"], domains=domains
    )
    assert report["n"] == 6
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["macro_f1"] == pytest.approx(59 / 90)
    assert report["ece"] == pytest.approx(1 / 12)
    assert report["per_class_recall"] == pytest.approx({"x": 0.5, "y": 1.0, "z": 2 / 3, "w": None})
    assert report["per_class_recall"]["w"] is None
    assert report["confusion_matrix"] == [row + [0] for row in MATRIX] + [[0, 0, 0, 0]]
    # rows 0, 1, 5 are domain a (T F F); rows 2, 3, 4 are domain b (all correct)
    assert list(report["per_domain_accuracy"]) == ["a", "b"]
    assert report["per_domain_accuracy"] == pytest.approx({"a": 1 / 3, "b": 1.0})


def test_classification_report_without_domains():
    report = classification_report(Y_TRUE, Y_PRED, np.full(6, 0.75), labels=["x", "y", "z"])
    assert "per_domain_accuracy" not in report
