"""Events written by someone other than the service (anyone with write access to the event
files or to Redis), through both transports into a real monitor app over the tiny bundles:
each bad value is counted by reason and dropped, a label posted before its request was served
never joins, and /metrics, /status and /healthz answer 200 throughout."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from harness import wait_until
from monitoring.app import create_app
from shiftwatch.events import LabelEvent
from shiftwatch.settings import MonitorSettings
from shiftwatch.transport.redis_streams import (
    EVENT_FIELD,
    label_stream,
    prediction_stream,
)
from shiftwatch.transport.segments import SegmentWriter
from tests.monitoring.served import served_output, served_prediction
from tests.servers import TINY_NAMES

pytestmark = [pytest.mark.slow, pytest.mark.integration]

PRIMARY = TINY_NAMES["baseline"]
PREFIX = "sw"


def untrusted_events(tiny_store: dict, transport: str) -> tuple[list, dict[str, int]]:
    """The events, in the order they are written, and the rejections they must cause."""
    base, alibi, nope = (tiny_store[v][0].meta for v in ("baseline", "research", "no_pe"))
    assert base.embedding_dims != 3 and len(base.labels) > 2
    right, wrong = base.labels[0], base.labels[1]
    now = time.time()
    evil = served_output(alibi).model_copy(update={"model": "evil|x"})
    with_evil_shadow = served_prediction(base, "evil-1", now, shadows=(alibi,))
    with_evil_shadow.shadows.append(evil)
    two_classes = served_prediction(base, "two-classes", now)
    two_classes.probabilities = {right: 0.9, wrong: 0.1}
    small_embedding = served_prediction(base, "small-embedding", now)
    small_embedding.embedding = [0.0, 0.0, 0.0]
    events = [
        # The pre-labelling attack: a wrong label for `order-42` long before it is served.
        LabelEvent(request_id="order-42", label=wrong, timestamp=now - 1000),
        served_prediction(base, "order-42", now, shadows=(alibi, nope)),
        LabelEvent(request_id="order-42", label=right, timestamp=now + 1),
        with_evil_shadow,
        LabelEvent(request_id="evil-1", label=right, timestamp=now + 1),
        two_classes,
        small_embedding,
        served_prediction(base, "no-label", now),
        LabelEvent(request_id="no-label", label="no-such-class", timestamp=now + 1),
    ]
    rejected = {"unknown_model": 1, "probability_classes": 1, "embedding_size": 1}
    rejected["unknown_label"] = 1
    if transport == "redis":  # the answering model's stream is not this model's
        events.append(served_prediction(alibi, "elsewhere", now))
        rejected["stream_model_mismatch"] = 1
    else:
        events.append(served_prediction(base, "evil-2", now).model_copy(update={"model": "evil|x"}))
        rejected["unknown_model"] += 1
    return events, rejected


def settings(tiny_store: dict, tmp_path: Path, **transport) -> MonitorSettings:
    return MonitorSettings(
        event_log_dir=tmp_path / "events",
        state_path=tmp_path / "state.sqlite",
        models_dir=Path(tiny_store["baseline"][0].path).parent,
        models=list(TINY_NAMES.values()),
        recompute_seconds=0.2,
        poll_seconds=0.1,
        min_estimate_rows=10,
        **transport,
    )


def check_monitor(client: TestClient, rejected: dict[str, int]) -> None:
    def caught_up() -> dict | None:
        status = client.get("/status").json()
        c = status["counters"]
        read = c.get("events_prediction", 0) + c.get("events_label", 0)
        return status if read >= 6 and status["computed_events"] >= read else None

    status = wait_until(caught_up, 60, "every event read and computed on", every=0.2)
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/status").status_code == 200
    c = status["counters"]
    assert c.get("rejected") == rejected
    assert (c["events_prediction"], c["events_label"]) == (3, 3)
    assert (c["labels_matched"], c["labels_before_prediction"]) == (2, 1)
    primary = status["models"][PRIMARY]
    assert primary["rows"] == 3 and primary["live"]["labeled"] == 2
    assert primary["live"]["accuracy"] == 1.0  # the true labels, not the forged one
    assert set(c["labeled"]) == {PRIMARY, TINY_NAMES["research"], TINY_NAMES["no_pe"]}
    for reason, count in rejected.items():
        assert f'shiftwatch_monitor_events_rejected_total{{reason="{reason}"}} {count}.0' in (
            metrics.text
        )
    assert "evil" not in metrics.text
    assert f'shiftwatch_live_accuracy_ratio{{model="{PRIMARY}"}} 1.0' in metrics.text


def test_bad_file_events_are_counted_dropped_and_answered_200(
    tiny_store: dict, tmp_path: Path
) -> None:
    events, rejected = untrusted_events(tiny_store, "file")
    monitor = settings(tiny_store, tmp_path, event_transport="file")
    SegmentWriter(monitor.event_log_dir, 1 << 20, 1 << 30).write(events)
    with TestClient(create_app(monitor)) as client:
        check_monitor(client, rejected)
    with TestClient(create_app(monitor)) as client:  # restarted on the same state
        check_monitor(client, rejected)


def test_bad_stream_events_are_counted_dropped_and_answered_200(
    tiny_store: dict, tmp_path: Path, redis_server
) -> None:
    events, rejected = untrusted_events(tiny_store, "redis")
    redis = redis_server.client()
    primary_stream = prediction_stream(PREFIX, PRIMARY)
    for event in events:  # every prediction onto the primary's stream, as the service would
        stream = label_stream(PREFIX) if event.type == "label" else primary_stream
        redis.xadd(stream, {EVENT_FIELD: event.model_dump_json()})
    monitor = settings(
        tiny_store,
        tmp_path,
        event_transport="redis",
        redis_url=redis_server.url,
        redis_stream_prefix=PREFIX,
    )
    with TestClient(create_app(monitor)) as client:
        check_monitor(client, rejected)
