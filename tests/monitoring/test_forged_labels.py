"""The pre-labelling attack end to end, through the service's /feedback and /predict and the
monitor (issue 23, item 2): a label posted for `order-42` before that request is served
never joins; the true label, posted after, does.

On the code before, the service logged only the first label for an id (the forged one) and
the monitor joined it: live accuracy counted the forgery."""

from __future__ import annotations

import time

import httpx
import pytest

from harness import start_monitor
from tests.servers import TINY_NAMES, monitor_counts, monitor_env, wait_status

pytestmark = [pytest.mark.slow, pytest.mark.integration]
PRIMARY = TINY_NAMES["baseline"]
SKEW = 0.5  # the monitor's label-join slack in this test, seconds


@pytest.fixture(scope="module")
def monitor(live_server: dict, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("monitor-forged")
    env = monitor_env(live_server, work, label_join_skew_seconds=str(SKEW))
    process = start_monitor(env, work / "monitor.log")
    try:
        yield process.url
    finally:
        process.stop()


def caught_up(status: dict) -> bool:
    """The monitor has read every event written so far and computed on all of them."""
    c = status["counters"]
    total = c.get("events_prediction", 0) + c.get("events_label", 0)
    return status["ingest_lag_seconds"] == 0 and status["computed_events"] >= total


def test_a_label_posted_before_the_request_never_joins(live_server: dict, monitor: str) -> None:
    # The session's server has served other tests: count from here on.
    before = wait_status(monitor, caught_up)
    feedback = live_server["url"] + "/feedback"
    request_id = f"order-{time.time_ns()}"
    predict = live_server["url"] + "/predict"
    answer = httpx.post(predict, json={"instances": [{"text": "w1 w2 w3"}]}).json()[0]
    wrong = next(label for label in ("topic_a", "topic_b") if label != answer["label"])
    forged = httpx.post(feedback, json={"labels": [{"request_id": request_id, "label": wrong}]})
    assert forged.json() == {"accepted": 1, "duplicates": 0}
    time.sleep(SKEW * 3)  # the request is served well after the forged label
    body = {"instances": [{"text": "w1 w2 w3", "request_id": request_id}]}
    served = httpx.post(predict, json=body).json()[0]
    assert served["label"] == answer["label"]  # the same text, the same answer
    true = httpx.post(
        feedback, json={"labels": [{"request_id": request_id, "label": served["label"]}]}
    )
    assert true.json() == {"accepted": 1, "duplicates": 0}  # not blocked by the forgery

    def delta(status: dict) -> dict[str, int]:
        now, then = monitor_counts(status, PRIMARY), monitor_counts(before, PRIMARY)
        return {key: now[key] - then[key] for key in ("matched", "labeled", "correct")} | {
            "before_prediction": status["counters"].get("labels_before_prediction", 0)
            - before["counters"].get("labels_before_prediction", 0)
        }

    expected = {"matched": 1, "labeled": 1, "correct": 1, "before_prediction": 1}
    status = wait_status(monitor, lambda s: delta(s) == expected)
    assert delta(status) == expected  # the true label joined and counted right, the forgery not
