"""Schema fuzzing: schemathesis generates requests from the service's own OpenAPI document
(BentoML's GET /docs.json); over >= 1000 of them, no 5xx and every 4xx carries a message."""

from __future__ import annotations

import json
from collections import Counter

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from tests.reliability.conftest import running_service, service_env

pytestmark = [pytest.mark.slow, pytest.mark.behaviour]
MIN_REQUESTS = 1000
LABELS = ["topic_a", "topic_b", "topic_c", "first_a", "first_b", "first_c"]


@pytest.fixture(scope="module")
def server(tiny_store: dict, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("fuzz")
    with running_service(service_env(work), work / "serve.log") as process:
        yield process


def one_of_tokens_or_text(case):
    """The one rule of /predict that OpenAPI cannot state: exactly one of `tokens`, `text`.
    Generated instances that break it are mended so the fuzzer reaches the models too."""
    instances = case.body.get("instances") if isinstance(case.body, dict) else None
    for k, instance in enumerate(instances if isinstance(instances, list) else []):
        if isinstance(instance, dict):
            if instance.get("tokens") is not None and instance.get("text") is not None:
                instance.pop("text" if k % 2 else "tokens")
            elif instance.get("tokens") is None and instance.get("text") is None:
                instance["text"] = "w1 w2"
            instance.pop("model", None)  # a random model name is always a 400
    return case


def known_labels(case):
    """/feedback with labels the models have, so accepted and duplicate paths are fuzzed."""
    items = case.body.get("labels") if isinstance(case.body, dict) else None
    for k, item in enumerate(items if isinstance(items, list) else []):
        if isinstance(item, dict):
            item["label"] = LABELS[k % len(LABELS)]
    return case


def message_problem(status: int, content: bytes) -> str | None:
    """Why a 4xx body does not carry a message (None when it does)."""
    try:
        body = json.loads(content)
    except ValueError:
        return f"not JSON: {content[:200]!r}"
    if not isinstance(body, dict) or not isinstance(body.get("error"), str) or not body["error"]:
        return f"no 'error' message: {content[:200]!r}"
    for detail in body.get("detail") or []:
        if not (isinstance(detail, dict) and detail.get("msg") and "loc" in detail):
            return f"a detail without msg/loc: {detail!r}"
    return None


def run_pass(strategy, examples: int, check) -> None:
    """`check` every case of up to `examples` drawn from `strategy`.

    Derandomized: the same requests on every run. No shrinking: `check` records failures
    instead of raising, so one run reports all of them.
    """

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def send(case) -> None:
        check(case)

    send()


def test_schema_fuzzing_finds_no_server_error(server, record_property) -> None:
    schema = schemathesis.openapi.from_url(server.url + "/docs.json", timeout=30)
    assert {op.ok().label for op in schema.get_all_operations()} >= {
        "POST /predict",
        "POST /feedback",
    }
    passes = [
        ("positive", schema.as_strategy(generation_mode=GenerationMode.POSITIVE), 350),
        ("negative", schema.as_strategy(generation_mode=GenerationMode.NEGATIVE), 350),
        (
            "positive, one of tokens/text",
            schema["/predict"]["POST"]
            .as_strategy(generation_mode=GenerationMode.POSITIVE)
            .map(one_of_tokens_or_text),
            300,
        ),
        (
            "positive, known labels",
            schema["/feedback"]["POST"]
            .as_strategy(generation_mode=GenerationMode.POSITIVE)
            .map(known_labels),
            150,
        ),
    ]
    statuses: Counter = Counter()
    server_errors, silent_rejections = [], []
    session = requests.Session()

    def check(name: str, case) -> None:
        response = case.call(base_url=server.url, session=session, timeout=30)
        statuses[(name, case.operation.label, response.status_code)] += 1
        if response.status_code >= 500:
            server_errors.append((case.operation.label, case.body, response.text[:300]))
        elif response.status_code >= 400:
            problem = message_problem(response.status_code, response.content)
            if problem:
                silent_rejections.append((case.operation.label, case.body, problem))

    for name, strategy, examples in passes:
        run_pass(strategy, examples, lambda case, name=name: check(name, case))

    total = sum(statuses.values())
    by_status = Counter()
    for (_, _, status), count in statuses.items():
        by_status[status] += count
    summary = {
        "requests": total,
        "by_status": dict(sorted(by_status.items())),
        "by_pass": {f"{p} | {op} | {s}": n for (p, op, s), n in sorted(statuses.items())},
    }
    record_property("fuzz", json.dumps(summary))
    print(f"\nschema fuzzing: {json.dumps(summary, indent=1)}")

    assert total >= MIN_REQUESTS, summary
    assert server_errors == [], server_errors[:5]
    assert silent_rejections == [], silent_rejections[:5]
    # The fuzzer reached the models and the label store, not only the validators.
    predict_ok = sum(n for (_, op, s), n in statuses.items() if op == "POST /predict" and s == 200)
    feedback_ok = sum(
        n for (_, op, s), n in statuses.items() if op == "POST /feedback" and s == 200
    )
    assert predict_ok >= 100 and feedback_ok >= 50, summary
    assert httpx.get(server.url + "/readyz").status_code == 200
    assert server.process.poll() is None
