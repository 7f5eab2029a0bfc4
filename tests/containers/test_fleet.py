"""deploy/docker-compose.fleet.yml run for real: three service replicas behind HAProxy writing
to Redis Streams, one monitor consuming the whole fleet, Prometheus; Redis, HAProxy and
Prometheus are the Debian stand-ins where no registry answers. Faults are made to the
containers themselves: a replica and the monitor killed with SIGKILL, Redis restarted."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from tests.containers.engine import (
    DEPLOY,
    Stack,
    assert_confined,
    crash,
    engine,
    http_get_in,
    inspect,
    wait_until,
)
from tests.containers.traffic import Load, Sent, predict_and_label
from tests.servers import monitor_counts

pytestmark = [pytest.mark.containers, pytest.mark.behaviour]
API, MONITOR = "http://127.0.0.1:3000", "http://127.0.0.1:3002"
PRIMARY = "baseline"
REPLICAS = 3
DROPS = ("transport_error", "queue_full", "shutdown")  # events a replica counted as lost


@pytest.fixture(scope="module")
def fleet(containers_artifacts: Path, secrets_dir: Path):
    logs = containers_artifacts / "fleet"
    logs.mkdir(parents=True, exist_ok=True)
    stack = Stack(
        "swfleet",
        [DEPLOY / "docker-compose.fleet.yml", DEPLOY / "standins.fleet.yml"],
        env={"SHIFTWATCH_SECRETS_DIR": str(secrets_dir)},
        log_dir=logs,
    )
    stack.up("--scale", f"service={REPLICAS}")
    try:
        wait_until(lambda: len(ready_replicas(stack)) == REPLICAS, 180, "every replica ready")
        wait_until(lambda: httpx.get(MONITOR + "/healthz").status_code == 200, 120, "monitor")
        wait_until(lambda: httpx.get(API + "/readyz").status_code == 200, 60, "the balancer")
        yield stack
    finally:
        assert stack.down() == [], "`down` left containers or volumes behind"


def ready_replicas(stack: Stack) -> list[str]:
    ready = []
    for name in stack.containers("service"):
        try:
            http_get_in(stack, name, "http://127.0.0.1:3000/readyz")
        except RuntimeError:
            continue
        ready.append(name)
    return ready


def replica_metrics(stack: Stack) -> dict[str, str]:
    return {
        name: http_get_in(stack, name, "http://127.0.0.1:3000/metrics")
        for name in stack.containers("service")
    }


def served(metrics: str, endpoint: str) -> float:
    """Requests to `endpoint` this replica answered 200 (its request counter)."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("shiftwatch_http_requests_total{")
        and f'endpoint="{endpoint}"' in line
        and 'http_response_code="200"' in line
    )


def drops(stack: Stack) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for text in replica_metrics(stack).values()
        for line in text.splitlines()
        if line.startswith("shiftwatch_event_log_write_errors_total{")
        and any(f'reason="{reason}"' in line for reason in DROPS)
    )


def redis_cli(stack: Stack, *args: str) -> str:
    """redis-cli inside the Redis container, logged in as its health check does: the password
    from the secret file, in REDISCLI_AUTH (never an argument)."""
    script = 'REDISCLI_AUTH="$(cat /run/secrets/redis_password)" exec redis-cli "$@"'
    return stack.exec(stack.one("redis"), "sh", "-c", script, "redis-cli", *args)


def status() -> dict:
    return httpx.get(MONITOR + "/status", timeout=10).json()


def counts() -> dict[str, int]:
    return monitor_counts(status(), PRIMARY)


def caught_up(stack: Stack) -> dict[str, int]:
    """The monitor's counts once its consumer group has read and acknowledged every stream
    to its end, as Redis itself says: the group's last delivered id is the stream's last
    id, nothing pending. (Not XINFO's `lag`: Redis counts it from a read counter that a
    restart or a trim can leave behind for good, reporting entries the group has read.)"""

    def idle():
        scan = ("SCAN", "0", "MATCH", "shiftwatch:*", "TYPE", "stream", "COUNT", "1000")
        _, keys = json.loads(redis_cli(stack, "--json", *scan))
        for key in keys:
            groups = json.loads(redis_cli(stack, "--json", "XINFO", "GROUPS", key))
            group = next(g for g in groups if g["name"] == "shiftwatch-monitor")
            stream = json.loads(redis_cli(stack, "--json", "XINFO", "STREAM", key))
            ends = (group["last-delivered-id"], stream["last-generated-id"])
            if ends[0] != ends[1] or group["pending"] != 0:  # named on timeout
                raise RuntimeError(f"{key} not caught up: {group}, stream ends at {ends[1]}")
        return monitor_counts(status(), PRIMARY)

    first = wait_until(idle, 120, "the monitor to catch up")
    time.sleep(1)  # an acknowledged batch's counters are in the next /status
    again = counts()
    assert again == first, (first, again)
    return again


def in_background(
    stack: Stack, n: int, tag: str, seed: int, before: dict[str, int]
) -> Callable[[], Sent]:
    """Start n predictions and labels through the balancer in a thread; wait for the monitor
    to count the first 20, so a fault made next lands mid-stream. Returns what joins it."""
    result: dict = {}

    def send() -> None:
        try:
            token = stack.secret("feedback_token")
            result["sent"] = predict_and_label(API, n, tag, seed=seed, token=token)
        except BaseException as exc:  # an answer other than 200: raised by join, in the test
            result["error"] = exc

    thread = threading.Thread(target=send)
    thread.start()
    wait_until(lambda: counts()["predictions"] >= before["predictions"] + 20, 60, "traffic")

    def join() -> Sent:
        thread.join(timeout=300)
        assert not thread.is_alive(), "the traffic did not finish in 300 s"
        if "error" in result:
            raise result["error"]
        return result["sent"]  # every /predict and /feedback answered 200

    return join


def settled(expect: dict[str, int], timeout: float = 120) -> dict[str, int]:
    def reached():
        c = counts()
        return c if all(c[k] >= v for k, v in expect.items()) else None

    return wait_until(reached, timeout, f"the monitor to count {expect}")


def assert_counted_once(before: dict[str, int], sent: Sent) -> None:
    """Every prediction and label `sent` counted by the monitor once, every label joined."""
    expect = {
        key: before[key] + sent.requests for key in ("predictions", "labels", "matched", "labeled")
    }
    c = settled(expect)
    assert c == {**expect, "duplicates": 0, "correct": before["correct"] + sent.correct}


def test_labels_join_whichever_replica_served_them(fleet: Stack) -> None:
    before = caught_up(fleet)
    sent = predict_and_label(API, 90, "join", seed=31, token=fleet.secret("feedback_token"))
    assert_counted_once(before, sent)
    # Round robin alternates /predict and /feedback over the three replicas, so every label
    # went to another replica than its prediction, and each replica took a third of each.
    share = sent.requests // REPLICAS
    for name, text in replica_metrics(fleet).items():
        assert (served(text, "/predict"), served(text, "/feedback")) == (share, share), name


def test_a_replica_killed_under_traffic_fails_only_its_requests_in_flight(fleet: Stack) -> None:
    victim = fleet.containers("service")[0]
    with Load(API, clients=6, probe=False) as load:
        time.sleep(4)
        restarts = crash(victim)
        killed_at = load.now()
        time.sleep(8)  # past the balancer's health checks (2 s, 2 falls)
    failed = [(t, o) for t, o in load.requests if o != 200]
    assert len(load.requests) > 100
    # Only requests in flight on the killed replica fail: at most one per client, none sent
    # once its processes are gone (the kernel tears the container down within milliseconds;
    # 1 s is ample), because the balancer retries a refused connection on another replica.
    assert all(t < killed_at + 1.0 for t, _ in failed), failed
    assert len(failed) <= load.clients, failed
    # The restart policy brings the replica back, and it joins the rotation again.
    wait_until(lambda: inspect(victim)["RestartCount"] > restarts, 60, "a restart")
    wait_until(lambda: len(ready_replicas(fleet)) == REPLICAS, 120, "the replica back")


def test_redis_restarted_mid_stream_loses_nothing_unaccounted_and_repeats_nothing(
    fleet: Stack,
) -> None:
    before, dropped_before = caught_up(fleet), drops(fleet)
    redis = fleet.one("redis")
    traffic = in_background(fleet, 150, "redis", 32, before)
    engine("restart", "-t", "10", redis)
    sent = traffic()
    events_sent = sent.requests + sent.labels

    def accounted():
        c = counts()
        ingested = c["predictions"] + c["labels"] - before["predictions"] - before["labels"]
        lost = drops(fleet) - dropped_before
        return (c, ingested, lost) if ingested + lost >= events_sent else None

    c, ingested, lost = wait_until(accounted, 120, "every event delivered or counted lost")
    assert (ingested + lost, c["duplicates"]) == (events_sent, 0), (c, before, lost)
    # The consumer group (its position) lives in the append-only file on the volume.
    groups = redis_cli(fleet, "XINFO", "GROUPS", "shiftwatch:labels")
    assert "shiftwatch-monitor" in groups


def test_redis_requires_its_password_and_no_command_line_holds_it(fleet: Stack) -> None:
    redis = fleet.one("redis")
    assert "NOAUTH" in fleet.exec(redis, "redis-cli", "ping")  # redis-cli exits 0 on it
    assert redis_cli(fleet, "ping").strip() == "PONG"
    password = fleet.secret("redis_password")
    for name in fleet.containers():
        # every process's command line, as `ps` shows it
        lines = fleet.exec(name, "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
        assert password not in lines, name
        assert password not in json.dumps(inspect(name)["Config"]["Env"]), name


def test_every_container_is_confined_as_the_compose_file_says(fleet: Stack) -> None:
    services = yaml.safe_load((DEPLOY / "docker-compose.fleet.yml").read_text())["services"]
    for service in ("redis", "lb", "monitor", "prometheus"):
        assert_confined(fleet.one(service), services[service])
    for replica in fleet.containers("service"):
        assert_confined(replica, services["service"])


def test_monitor_killed_and_restarted_counts_every_event_once(fleet: Stack) -> None:
    before = caught_up(fleet)
    monitor = fleet.one("monitor")
    traffic = in_background(fleet, 120, "kill", 33, before)
    restarts = crash(monitor)
    sent = traffic()
    # The restart policy starts it again, on the same state volume and consumer group.
    wait_until(lambda: inspect(monitor)["RestartCount"] > restarts, 60, "a restart")
    assert_counted_once(before, sent)
