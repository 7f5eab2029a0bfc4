"""The real monitor process beside the real service: HTTP traffic in, metrics and status out."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from monitoring import estimators
from monitoring.calibration import HEADLINE, Calibration
from orchestration.replay.stack import start_monitor
from shiftwatch.data.synthetic import sample_scenario
from shiftwatch.reference import load_reference
from tests.servers import TINY_NAMES, logged_events, monitor_env, wait_status

PRIMARY, RESEARCH = TINY_NAMES["baseline"], TINY_NAMES["research"]

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def monitor(live_server: dict, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("monitor")
    env = monitor_env(live_server, work)
    process = start_monitor(env, work / "monitor.log")
    try:
        yield process.url
    finally:
        process.stop()


def headline_on(live_server: dict, request_ids: list[str]) -> tuple[float, list[float], np.ndarray]:
    """The primary's headline estimate and its interval on these requests, by the rule of
    monitoring.calibration: the share of rows whose negative entropy after temperature
    scaling is above the ATC threshold fitted on the bundle's reference (the interval: 5-95%
    of that share over the bootstrapped thresholds). The probabilities are the logged ones,
    exactly what the monitor reads. Also each request's ATC verdict, in `request_ids` order."""
    bundle, _ = live_server["store"]["baseline"]
    calibration = Calibration.fit(load_reference(bundle), bundle.meta.labels)
    logged = {
        event["request_id"]: [event["probabilities"][label] for label in bundle.meta.labels]
        for event in logged_events(live_server["events"])
        if event["type"] == "prediction" and event["model"] == PRIMARY
    }
    probabilities = np.array([logged[i] for i in request_ids])
    assert len(probabilities) == len(request_ids)
    scaled = estimators.scale(probabilities, calibration.temperature)
    score = (scaled * np.log(np.clip(scaled, 1e-12, 1.0))).sum(axis=1)
    estimate = float(np.mean(score > calibration.thresholds[HEADLINE]))
    shares = (score[None, :] > calibration.bootstrap_thresholds[HEADLINE][:, None]).mean(axis=1)
    verdict = (score > calibration.thresholds[HEADLINE]).astype(float)
    return estimate, np.quantile(shares, [0.05, 0.95]).tolist(), verdict


def test_requests_and_feedback_show_up_in_status_metrics_and_report(
    live_server: dict, monitor: str
) -> None:
    before = httpx.get(monitor + "/status").json()["counters"]
    traffic = sample_scenario(None, 64, seed=7)
    ids = [f"mon-{i}" for i in range(len(traffic))]
    answers = []
    for start in range(0, len(traffic), 8):
        rows = traffic.iloc[start : start + 8]
        body = {
            "instances": [
                {"text": t, "domain": d, "request_id": ids[start + k]}
                for k, (t, d) in enumerate(zip(rows["text"], rows["domain"], strict=True))
            ]
        }
        response = httpx.post(live_server["url"] + "/predict", json=body)
        assert response.status_code == 200
        answers += [answer["label"] for answer in response.json()]
    # What the monitor must report for the primary: accuracy of its answers on the 40 labeled.
    expected = sum(a == t for a, t in zip(answers[:40], traffic["label"][:40], strict=True)) / 40
    labels = [
        {"request_id": i, "label": label}
        for i, label in zip(ids[:40], traffic["label"], strict=False)
    ]
    assert (
        httpx.post(live_server["url"] + "/feedback", json={"labels": labels}).json()["accepted"]
        == 40
    )

    def caught_up(status: dict) -> bool:
        c = status["counters"]
        return (
            c.get("events_prediction", 0) - before.get("events_prediction", 0) == 64
            and c.get("labels_matched", 0) - before.get("labels_matched", 0) == 40
            # ...and the latest window computation has seen all of it
            and status["computed_events"]
            >= c.get("events_prediction", 0) + c.get("events_label", 0)
        )

    status = wait_status(monitor, caught_up)
    assert caught_up(status), status["counters"]
    baseline = status["models"][PRIMARY]
    assert baseline["rows"] == 64 and baseline["live"]["labeled"] == 40
    assert baseline["live"]["accuracy"] == pytest.approx(expected)
    expected_estimate, expected_interval, verdict = headline_on(live_server, ids)
    assert baseline["headline_estimator"] == HEADLINE == "atc_negative_entropy"
    assert baseline["estimated_accuracy"] == pytest.approx(expected_estimate)
    # Every estimator on all 64 rows and on the 40 labeled ones; the three tiny bundles share
    # their reference rows, so agreement is there too. Errors are taken on the labeled rows.
    estimates = baseline["estimates"]
    assert set(estimates) == {
        "agreement",
        "atc_max_confidence",
        "atc_negative_entropy",
        "bbse",
        "doc",
    }
    headline = estimates[baseline["headline_estimator"]]
    assert headline["estimate"] == baseline["estimated_accuracy"]
    assert headline["error"] == pytest.approx(headline["paired"] - expected)
    assert baseline["estimation_error"] == headline["error"]
    assert headline["interval"] == pytest.approx(expected_interval)
    # 40 of 64 rows labeled (over the 30 the correction needs): the prediction-powered
    # estimate, ATC's verdicts on the 24 unlabeled rows corrected by its mean error on the 40.
    right = np.array([a == t for a, t in zip(answers, traffic["label"], strict=True)], float)
    residual = right[:40] - verdict[:40]
    corrected = (right[:40].sum() + verdict[40:].sum() + 24 * residual.mean()) / 64
    bound = baseline["accuracy_bound"]
    assert bound["basis"] == "labels"
    assert bound["corrected"]["estimate"] == pytest.approx(corrected)
    assert bound["corrected"]["labeled"] == 40 and bound["corrected"]["rows"] == 64
    margin = 1.6448536269514722 * np.sqrt(24 / 64) * residual.std(ddof=1) / np.sqrt(40)
    assert bound["value"] == pytest.approx(max(0.0, corrected - margin))
    assert bound["label_free"] == min(bound["confidence_term"], bound["peer_term"]["value"])
    assert baseline["label_shift"] is not None and "priors" in baseline["label_shift"]
    assert baseline["drift"] is not None and "length" in baseline["drift"]["columns"]
    assert set(status["models"]) == set(TINY_NAMES.values())

    metrics = httpx.get(monitor + "/metrics").text
    for series in (
        'shiftwatch_monitor_events_ingested_total{type="prediction"}',
        "shiftwatch_predictions_labeled_total{domain=",
        "shiftwatch_predictions_correct_total{",
        f'shiftwatch_drift_share{{model="{PRIMARY}"}}',
        f'shiftwatch_feature_drift_score{{feature="length",model="{PRIMARY}"}}',
        f'shiftwatch_live_accuracy_ratio{{model="{RESEARCH}"}}',
        f'shiftwatch_estimated_accuracy_ratio{{model="{PRIMARY}"}}',
        "shiftwatch_monitor_drift_computation_seconds_bucket",
        "shiftwatch_monitor_ingest_lag_seconds",
    ):
        assert series in metrics, series

    # The exported values, as numbers: the same as /status says, from the same window.
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line and not line.startswith("#")
    }
    at = f'{{model="{PRIMARY}"}}'
    assert samples[f"shiftwatch_label_coverage_ratio{at}"] == pytest.approx(40 / 64)
    assert samples[f"shiftwatch_live_accuracy_ratio{at}"] == pytest.approx(expected)
    assert samples[f"shiftwatch_deployment_gap_ratio{at}"] == pytest.approx(
        baseline["reference_accuracy"] - expected
    )
    assert samples[f"shiftwatch_estimation_error_ratio{at}"] == pytest.approx(
        headline["paired"] - expected
    )
    for name, values in estimates.items():
        at_estimator = f'{{estimator="{name}",model="{PRIMARY}"}}'
        assert samples[f"shiftwatch_estimator_accuracy_ratio{at_estimator}"] == pytest.approx(
            values["estimate"]
        )
        assert samples[f"shiftwatch_estimator_error_ratio{at_estimator}"] == pytest.approx(
            values["error"]
        )
    # The exported verdict is the one /status gives for the same window.
    detected = float(baseline["label_shift"]["detected"])
    assert samples[f"shiftwatch_label_shift_detected{at}"] == detected
    assert samples[f"shiftwatch_window_predictions{at}"] == 64
    assert samples[f"shiftwatch_accuracy_lower_bound_ratio{at}"] == pytest.approx(bound["value"])
    assert samples[f"shiftwatch_corrected_accuracy_ratio{at}"] == pytest.approx(corrected)
    assert samples[f"shiftwatch_label_free_lower_bound_ratio{at}"] == pytest.approx(
        bound["label_free"]
    )
    basis = f'{{basis="labels",model="{PRIMARY}"}}'
    assert samples[f"shiftwatch_accuracy_bound_basis_info{basis}"] == 1.0
    assert "shiftwatch_accuracy_slo_ratio" not in metrics  # no SLO set: no series, no alert

    report = httpx.get(monitor + "/report", params={"model": PRIMARY})
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "Drift in column 'length'" in report.text  # Evidently's own widget text
    assert report.text.count('<link rel="icon" href="data:,">') == 1  # no /favicon.ico asked
    assert httpx.get(monitor + "/report", params={"model": "nope"}).status_code == 404
