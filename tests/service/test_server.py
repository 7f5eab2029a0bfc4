"""A real `bentoml serve` process on loopback, hit with bentoml.SyncHTTPClient and plain HTTP."""

from __future__ import annotations

import json
import math
import re
import socket
import time
from collections import Counter

import bentoml
import httpx
import numpy as np
import pytest

from service.rejections import LOG_LINES, LOG_PERIOD_SECONDS
from shiftwatch.inference import OnnxClassifier
from tests.servers import TINY_NAMES, logged_events, settled_events, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.integration]
PRIMARY = TINY_NAMES["baseline"]
JSON_HEADERS = {"content-type": "application/json"}


def event_lines(live_server: dict) -> list[dict]:
    return logged_events(live_server["events"])


def wait_for_events(live_server: dict, predicate, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        lines = event_lines(live_server)
        if predicate(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def test_health_endpoints(live_server: dict) -> None:
    for path in ("/livez", "/readyz"):
        assert httpx.get(live_server["url"] + path).status_code == 200


def test_predictions_equal_direct_onnxruntime(live_server: dict, tiny_dataset) -> None:
    bundle, tag = live_server["store"]["baseline"]
    frame = tiny_dataset.split("test").head(8)
    instances = [
        {"tokens": t.split(), "request_id": f"sdk-{i}"} for i, t in enumerate(frame["text"])
    ]
    with bentoml.SyncHTTPClient(live_server["url"]) as client:
        answers = client.predict(instances=instances)
    classifier = OnnxClassifier.from_bundle(bundle, prefer_gpu=False)
    logits, _ = classifier.predict(bundle.tokenizer.encode(list(frame["text"])).ids)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    for i, answer in enumerate(answers):
        answer = answer if isinstance(answer, dict) else answer.model_dump()
        assert answer["request_id"] == f"sdk-{i}"
        assert answer["model"] == PRIMARY and answer["model_version"] == tag
        assert answer["label"] == bundle.meta.labels[int(probs[i].argmax())]
        assert list(answer["probabilities"].values()) == pytest.approx(probs[i].tolist(), abs=1e-6)


BAD_REQUESTS = [
    # (endpoint, body, status, substring of the message)
    ("/predict", {"instances": []}, 400, "at least 1 instance"),
    ("/predict", {"instances": [{"text": "a"}] * 9}, 400, "9 instances exceeds the limit of 8"),
    ("/predict", {"instances": [{"tokens": []}]}, 400, "the sequence is empty"),
    (
        "/predict",
        {"instances": [{"tokens": ["a"] * 97}]},
        400,
        "97 whitespace-separated tokens exceeds the limit of 96",
    ),
    (
        "/predict",
        {"instances": [{"text": "a " * 1001}]},
        400,
        "2002 characters exceeds the limit of 2000",
    ),
    ("/predict", {"instances": [{"text": "a", "model": "gpt"}]}, 400, "'gpt' is not loaded"),
    ("/predict", {"instances": [{"tokens": "not a list"}]}, 400, "tokens"),
    ("/predict", {"wrong": 1}, 400, "instances"),
    ("/predict", b'{"instances": [', 400, "malformed JSON"),
    ("/predict", b"x" * 70_000, 413, "70000 bytes exceeds the limit of 65536"),
    ("/feedback", {"labels": [{"request_id": "r", "label": "nope"}]}, 400, "'nope' is not one of"),
    ("/feedback", {"labels": []}, 400, "at least 1 label"),
    ("/feedback", b"{", 400, "malformed JSON"),
]


@pytest.mark.parametrize(("endpoint", "body", "status", "message"), BAD_REQUESTS)
def test_bad_input_gets_its_4xx_and_message(
    live_server: dict, endpoint, body, status, message
) -> None:
    before = len(settled_events(live_server["events"]))
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(
        live_server["url"] + endpoint, content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert message in response.text
    after = settled_events(live_server["events"])
    assert len(after) == before, "a rejected request reached the event log"


FLOOD = 1000  # invalid requests
LEFT_OUT = re.compile(r"\((\d+) earlier rejections not logged")


def test_a_flood_of_invalid_requests_leaves_few_log_lines_and_no_traceback(
    live_server: dict,
) -> None:
    log = live_server["log"]
    start = log.stat().st_size
    bodies = [  # three reasons: a schema error, a limit, malformed JSON
        b'{"wrong": 1}',
        json.dumps({"instances": [{"tokens": ["a"] * 97}]}).encode(),
        b'{"instances": [',
    ]

    def logged() -> list[str]:
        return log.read_bytes()[start:].decode().splitlines()

    def rejected_lines() -> list[str]:
        return [line for line in logged() if "rejected" in line]

    started = time.monotonic()
    with httpx.Client(base_url=live_server["url"], headers=JSON_HEADERS) as http:
        statuses = Counter(
            http.post("/predict", content=bodies[i % 3]).status_code for i in range(FLOOD)
        )
        # Past the rate limit's period, one more rejection is logged, with the count of
        # those left out (earlier tests' rejections may have used this period's lines).
        time.sleep(LOG_PERIOD_SECONDS)
        flood_lines = len(rejected_lines())
        statuses[http.post("/predict", content=bodies[0]).status_code] += 1
    periods = math.ceil((time.monotonic() - started) / LOG_PERIOD_SECONDS) + 1
    assert statuses == {400: FLOOD + 1}
    wait_until(lambda: len(rejected_lines()) > flood_lines, 10, "the last rejection's line")
    lines = logged()
    assert not [line for line in lines if "Traceback" in line or "Exception on" in line]
    reasons = re.compile(
        r"rejected POST /predict: 400 (invalid_schema|too_many_tokens|malformed_json)"
    )
    rejected = [line for line in lines if "rejected" in line]
    assert rejected and all(reasons.search(line) for line in rejected), rejected
    # Every rejection is a line or counted in a later line (earlier tests' may add to it).
    left_out = [int(n) for line in rejected for n in LEFT_OUT.findall(line)]
    assert "earlier rejections not logged" in rejected[-1], rejected[-1]
    assert len(rejected) + sum(left_out) >= FLOOD + 1, rejected
    assert len(lines) <= LOG_LINES * periods, lines[: 2 * LOG_LINES]


def test_event_log_matches_requests(live_server: dict) -> None:
    ids = [f"log-{i}" for i in range(5)]
    body = {
        "instances": [
            {"text": "mark_a w1 mark_b mark_c", "request_id": r, "domain": "news"} for r in ids
        ]
    }
    answers = httpx.post(live_server["url"] + "/predict", json=body).json()
    lines = wait_for_events(live_server, lambda ls: sum(e["request_id"] in ids for e in ls) == 5)
    logged = {e["request_id"]: e for e in lines if e["request_id"] in ids}
    assert set(logged) == set(ids)
    for answer in answers:
        event = logged[answer["request_id"]]
        assert event["type"] == "prediction" and event["domain"] == "news"
        assert event["predicted_label"] == answer["label"]
        assert event["confidence"] == pytest.approx(answer["confidence"])
        assert [s["model"] for s in event["shadows"]] == [
            TINY_NAMES["research"],
            TINY_NAMES["no_pe"],
        ]
        assert event["features"]["length"] == 4.0


def test_feedback_round_trip(live_server: dict) -> None:
    """Each distinct (id, label) is logged once: another label for an id goes to the monitor,
    which judges it (a label posted before its request was served must not block the true
    one); the same label again is counted as a duplicate."""
    url = live_server["url"] + "/feedback"
    first = httpx.post(url, json={"labels": [{"request_id": "fb-1", "label": "topic_a"}]}).json()
    again = httpx.post(
        url,
        json={
            "labels": [
                {"request_id": "fb-1", "label": "topic_b"},
                {"request_id": "fb-2", "label": "first_a"},
                {"request_id": "fb-1", "label": "topic_a"},
            ]
        },
    ).json()
    assert first == {"accepted": 1, "duplicates": 0}
    assert again == {"accepted": 2, "duplicates": 1}
    lines = wait_for_events(
        live_server, lambda ls: sum(e["request_id"] in ("fb-1", "fb-2") for e in ls) >= 3
    )
    labels = [(e["request_id"], e["label"]) for e in lines if e["type"] == "label"]
    fb = [pair for pair in labels if pair[0] in ("fb-1", "fb-2")]
    assert sorted(fb) == [("fb-1", "topic_a"), ("fb-1", "topic_b"), ("fb-2", "first_a")]


def test_metrics_carry_the_custom_series(live_server: dict) -> None:
    httpx.post(live_server["url"] + "/predict", json={"instances": [{"text": "kw1_2 w3 w4"}]})
    httpx.post(live_server["url"] + "/predict", json={"instances": [{"tokens": []}]})
    httpx.post(live_server["url"] + "/predict", content=b"x" * 70_000)  # refused by the limits
    text = httpx.get(live_server["url"] + "/metrics").text
    for series in (
        f'shiftwatch_predictions_total{{model="{PRIMARY}"',
        f'shiftwatch_predictions_total{{model="{TINY_NAMES["research"]}"',
        "shiftwatch_prediction_confidence_bucket",
        "shiftwatch_input_length_tokens_bucket",
        "shiftwatch_input_oov_share_bucket",
        'shiftwatch_requests_rejected_total{endpoint="predict",reason="empty_sequence"}',
        "shiftwatch_inference_seconds_bucket",
        "shiftwatch_inference_batch_size_bucket",
        'shiftwatch_event_log_events_total{type="prediction"}',
        'shiftwatch_http_requests_total{endpoint="/predict",http_response_code="200",'
        'service_name="shiftwatch"}',
        'shiftwatch_http_requests_total{endpoint="/predict",http_response_code="400",'
        'service_name="shiftwatch"}',
        'shiftwatch_http_requests_total{endpoint="/predict",http_response_code="413",'
        'service_name="shiftwatch"}',
        "shiftwatch_http_request_duration_seconds_bucket",
        "shiftwatch_input_long_words_total",
        f'shiftwatch_input_truncated_total{{model="{PRIMARY}"}}',
    ):
        assert series in text, series


def test_a_long_token_is_answered_not_refused(live_server: dict) -> None:
    body = {"instances": [{"tokens": ["mark_a", "q" * 200, "mark_b"], "request_id": "long-1"}]}
    response = httpx.post(live_server["url"] + "/predict", json=body)
    assert response.status_code == 200, response.text
    assert response.json()[0]["request_id"] == "long-1"


def test_models_lists_the_loaded_models(live_server: dict) -> None:
    catalog = httpx.get(live_server["url"] + "/models").json()
    assert catalog["primary"] == PRIMARY
    assert [m["name"] for m in catalog["models"]] == list(TINY_NAMES.values())
    assert [m["architecture"] for m in catalog["models"]] == list(TINY_NAMES)
    assert [m["role"] for m in catalog["models"]] == ["primary", "shadow", "shadow"]
    for model, (bundle, tag) in zip(catalog["models"], live_server["store"].values(), strict=True):
        assert model["version"] == tag and model["labels"] == bundle.meta.labels


@pytest.mark.parametrize("header", ["Content-Type", "Authorization", "Content-Length"])
def test_a_header_sent_twice_is_a_400(live_server: dict, header: str) -> None:
    """Raw HTTP: clients send what they like. main answered the Content-Type pair with a 500."""
    body = b'{"instances": [{"tokens": ["a", "b"]}]}'
    headers = {
        "Content-Type": ["multipart/form-data; boundary=XX", "application/json"],
        "Authorization": ["Bearer one", "Bearer two"],
        "Content-Length": [str(len(body))] * 2,
    }
    lines = ["POST /predict HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    for name in ("Content-Type", "Content-Length", "Authorization"):
        values = headers[name] if name == header else headers[name][-1:]
        lines += [f"{name}: {value}" for value in values]
    before = len(settled_events(live_server["events"]))
    port = int(live_server["url"].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert status == 400, answer[:500]
    if header != "Content-Length":  # uvicorn's HTTP parser may refuse that one before us
        assert f"{header.lower()}: sent 2 times".encode() in answer
    assert len(settled_events(live_server["events"])) == before
