"""A window with fewer labeled rows than the label-free estimates need: per-domain accuracy
and class recall are exported as live accuracy is (main dropped them below
SHIFTWATCH_MONITOR_MIN_ESTIMATE_ROWS, so the model-health panels went blank)."""

from __future__ import annotations

from collections import defaultdict

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestration.replay.stack import start_monitor
from shiftwatch.data.synthetic import sample_scenario
from tests.servers import TINY_NAMES, monitor_env, wait_status

PRIMARY = TINY_NAMES["baseline"]
LABELED = 24

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def monitor(live_server: dict, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("few-labels")
    # More rows than any window here holds: no estimate, no estimation error, ever.
    env = monitor_env(live_server, work, min_estimate_rows="100000")
    process = start_monitor(env, work / "monitor.log")
    try:
        yield process.url
    finally:
        process.stop()


def accuracy_by(keys: list[str], hits: list[bool]) -> dict[str, float]:
    groups: dict[str, list[bool]] = defaultdict(list)
    for key, hit in zip(keys, hits, strict=True):
        groups[key].append(hit)
    return {key: sum(group) / len(group) for key, group in groups.items()}


def test_domain_accuracy_and_class_recall_follow_live_accuracy(
    live_server: dict, monitor: str
) -> None:
    traffic = sample_scenario(None, LABELED, seed=41)
    ids = [f"few-{i}" for i in range(LABELED)]
    instances = [
        {"text": t, "domain": d, "request_id": i}
        for t, d, i in zip(traffic["text"], traffic["domain"], ids, strict=True)
    ]
    answers = []
    for start in range(0, LABELED, 8):
        body = {"instances": instances[start : start + 8]}
        response = httpx.post(live_server["url"] + "/predict", json=body)
        assert response.status_code == 200
        answers += [a["label"] for a in response.json()]
    truths = list(traffic["label"])
    labels = [{"request_id": i, "label": t} for i, t in zip(ids, truths, strict=True)]
    feedback = httpx.post(live_server["url"] + "/feedback", json={"labels": labels})
    assert feedback.json()["accepted"] == LABELED

    def computed(status: dict) -> bool:
        live = status["models"].get(PRIMARY, {}).get("live", {})
        return live.get("labeled") == LABELED

    status = wait_status(monitor, computed)
    window = status["models"][PRIMARY]
    assert window["live"]["labeled"] == LABELED and window["estimation_error"] is None
    hits = [a == t for a, t in zip(answers, truths, strict=True)]
    expected_domains = accuracy_by(list(traffic["domain"]), hits)
    expected_recall = accuracy_by(truths, hits)

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(httpx.get(monitor + "/metrics").text)
        for s in family.samples
    }
    domains = {
        dict(labels)["domain"]: value
        for (name, labels), value in samples.items()
        if name == "shiftwatch_live_accuracy_by_domain_ratio" and dict(labels)["model"] == PRIMARY
    }
    recall = {
        dict(labels)["class"]: value
        for (name, labels), value in samples.items()
        if name == "shiftwatch_class_recall_ratio" and dict(labels)["model"] == PRIMARY
    }
    assert domains == pytest.approx(expected_domains)
    assert recall == pytest.approx(expected_recall)
