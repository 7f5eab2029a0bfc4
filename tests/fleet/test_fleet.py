"""Fleet mode with real processes on loopback: redis-server, three `bentoml serve` replicas
writing to Redis Streams, one monitor consuming the whole fleet through a consumer group."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import httpx
import pytest

from harness import RedisServer
from orchestration.replay.stack import LocalProcess, free_port, start_monitor, start_service
from shiftwatch.data.synthetic import sample_scenario
from tests.servers import TINY_LIMITS, TINY_NAMES, monitor_counts, monitor_env, wait_status

pytestmark = [pytest.mark.slow, pytest.mark.integration]
PRIMARY = TINY_NAMES["baseline"]
DROPS = ("transport_error", "queue_full", "shutdown")


class Fleet:
    def __init__(self, store: dict, work: Path) -> None:
        self.work = work
        self.redis = RedisServer(work / "redis").start()
        self.transport = {
            "SHIFTWATCH_EVENT_TRANSPORT": "redis",
            "SHIFTWATCH_REDIS_URL": self.redis.url,
            "SHIFTWATCH_REDIS_STREAM_PREFIX": "fleet",
        }
        # A small writer queue, so that a Redis outage under traffic overflows it.
        service_env = {**TINY_LIMITS, **self.transport, "SHIFTWATCH_EVENT_LOG_QUEUE": "40"}
        self.replicas: list[LocalProcess] = []
        for i in range(3):
            # Each replica its own BentoML home, as each container has: BentoML empties the
            # home's Prometheus multiprocess folder at start-up, so replicas sharing one would
            # report each other's counters. The model store is shared through a link.
            home = work / f"home-{i}"
            home.mkdir()
            (home / "models").symlink_to(Path(os.environ["BENTOML_HOME"]) / "models")
            env = {**service_env, "BENTOML_HOME": str(home)}
            self.replicas.append(start_service(env, work / f"replica-{i}.log"))
        self.monitor_env = monitor_env({"store": store, "events": work / "unused"}, work)
        self.monitor_env |= self.transport
        self.monitor: LocalProcess | None = None
        self.start_monitor()

    def start_monitor(self) -> None:
        self.monitor = start_monitor(self.monitor_env, self.work / "monitor.log")

    def status(self) -> dict:
        return httpx.get(self.monitor.url + "/status").json()

    def drops(self) -> float:
        """Events the replicas counted as lost (every reason but io_error), summed."""
        total = 0.0
        for replica in self.replicas:
            for line in httpx.get(replica.url + "/metrics").text.splitlines():
                if line.startswith("shiftwatch_event_log_write_errors_total{") and any(
                    f'reason="{reason}"' in line for reason in DROPS
                ):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        for process in [*self.replicas, self.monitor]:
            if process is not None:
                process.stop()
        self.redis.stop()


@pytest.fixture(scope="module")
def fleet(tiny_store: dict, tmp_path_factory: pytest.TempPathFactory):
    fleet = Fleet(tiny_store, tmp_path_factory.mktemp("fleet"))
    try:
        yield fleet
    finally:
        fleet.stop()


def send(fleet: Fleet, n: int, tag: str, seed: int) -> tuple[int, int]:
    """n one-sequence requests round-robin over the replicas, each label posted to the next
    replica; returns (requests, correct answers of the primary)."""
    traffic = sample_scenario(None, n, seed=seed)
    correct = 0
    for i, (text, domain, truth) in enumerate(
        zip(traffic["text"], traffic["domain"], traffic["label"], strict=True)
    ):
        request_id = f"{tag}-{i}"
        served_by = fleet.replicas[i % 3].url
        labeled_by = fleet.replicas[(i + 1) % 3].url
        body = {"instances": [{"text": text, "domain": domain, "request_id": request_id}]}
        answer = httpx.post(served_by + "/predict", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        correct += answer.json()[0]["label"] == truth
        feedback = {"labels": [{"request_id": request_id, "label": truth}]}
        assert httpx.post(labeled_by + "/feedback", json=feedback).status_code == 200
    return n, correct


def counts(status: dict) -> dict[str, int]:
    return monitor_counts(status, PRIMARY)


def settled(fleet: Fleet, expect: dict[str, int], timeout: float = 90) -> dict:
    def done(status: dict) -> bool:
        c = counts(status)
        return (
            all(c[key] >= value for key, value in expect.items())
            and status["computed_events"] >= c["predictions"] + c["labels"]
        )

    return wait_status(fleet.monitor.url, done, timeout)


def test_labels_join_whichever_replica_served_and_accuracy_is_exact(fleet: Fleet) -> None:
    sent, correct = send(fleet, 90, "join", seed=11)
    status = settled(fleet, {"predictions": sent, "matched": sent})
    c = counts(status)
    assert c == {
        "predictions": sent,
        "labels": sent,
        "matched": sent,  # 100% of the labels, although none went to the serving replica
        "duplicates": 0,
        "labeled": sent,
        "correct": correct,
    }
    live = status["models"][PRIMARY]["live"]
    assert live["labeled"] == sent and live["accuracy"] == correct / sent
    assert status["transport"] == "redis" and status["transport_errors"] == {}
    assert set(status["streams"]) == {
        *(f"fleet:predictions:{name}" for name in TINY_NAMES.values()),
        "fleet:labels",
    }
    assert all(s == {"lag": 0, "pending": 0} for s in status["streams"].values())
    metrics = httpx.get(fleet.monitor.url + "/metrics").text
    assert 'shiftwatch_monitor_stream_lag_events{stream="fleet:labels"} 0.0' in metrics


def test_monitor_killed_mid_stream_loses_and_double_counts_nothing(fleet: Fleet) -> None:
    before = counts(fleet.status())
    result: dict = {}
    traffic = threading.Thread(target=lambda: result.update(sent=send(fleet, 120, "kill", 12)))
    traffic.start()
    wait_status(fleet.monitor.url, lambda s: counts(s)["predictions"] >= before["predictions"] + 30)
    fleet.monitor.process.kill()  # SIGKILL
    fleet.monitor.process.wait()
    traffic.join()
    fleet.start_monitor()  # the same state file, the same consumer group
    sent, correct = result["sent"]
    expect = {key: before[key] + sent for key in ("predictions", "labels", "matched", "labeled")}
    c = counts(settled(fleet, expect))
    assert c == {**expect, "duplicates": 0, "correct": before["correct"] + correct}


def test_redis_outage_mid_stream_answers_everything_and_counts_every_loss(fleet: Fleet) -> None:
    before = counts(fleet.status())
    dropped_before = fleet.drops()
    result: dict = {}
    traffic = threading.Thread(target=lambda: result.update(sent=send(fleet, 240, "down", 13)))
    traffic.start()
    wait_status(fleet.monitor.url, lambda s: counts(s)["predictions"] >= before["predictions"] + 20)
    fleet.redis.stop()
    traffic.join()  # every /predict and /feedback answered 200 (asserted in send)
    fleet.redis.start()
    sent, _ = result["sent"]
    events_sent = 2 * sent  # a prediction and a label per request

    def ingested(status: dict) -> int:
        c = counts(status)
        return c["predictions"] + c["labels"] - before["predictions"] - before["labels"]

    def accounted(status: dict) -> bool:  # the replicas' queues flushed, the monitor caught up
        return ingested(status) + fleet.drops() - dropped_before >= events_sent

    status = wait_status(fleet.monitor.url, accounted, timeout=90)
    c = counts(status)
    dropped = fleet.drops() - dropped_before
    assert dropped > 0, "the outage should overflow the replicas' 40-event queues"
    assert ingested(status) + dropped == events_sent  # every event arrived once or is counted lost
    assert c["duplicates"] == 0


def test_service_starts_and_serves_with_redis_unreachable(tiny_store: dict, tmp_path) -> None:
    env = {
        **TINY_LIMITS,
        "SHIFTWATCH_EVENT_TRANSPORT": "redis",
        "SHIFTWATCH_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens
    }
    service = start_service(env, tmp_path / "serve.log")
    try:
        body = {"instances": [{"text": "alpha beta gamma"}]}
        assert httpx.post(service.url + "/predict", json=body).status_code == 200
        metrics = httpx.get(service.url + "/metrics").text
        assert 'shiftwatch_event_transport_up{backend="redis"} 0.0' in metrics
    finally:
        service.stop()
