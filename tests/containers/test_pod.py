"""The sidecar pod of deploy/k8s (the Deployment as the kustomization builds it) run for real by
`podman kube play`: the serving and monitor containers with the manifest's security context,
probes and emptyDir volumes; a prediction reaches the monitor through the shared event log.
The other Kubernetes objects (Services, HPA, ServiceMonitor, ...) stay validated offline."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from tests.containers.engine import (
    BENTO_UID,
    DEPLOY,
    ENGINE,
    Stack,
    engine,
    http_get_in,
    inspect,
    wait_until,
)
from tests.deploy.kustomize import build

pytestmark = [pytest.mark.containers, pytest.mark.behaviour]


FEEDBACK_SECRET = "shiftwatch-feedback"  # the Secret deploy/README.md has the user create


def create_feedback_secret(token: str, work: Path) -> None:
    """The Secret `shiftwatch-feedback` as podman's `kube play` reads a secretKeyRef: a podman
    secret holding a JSON object of base64 values, by key (what `kubectl create secret` makes
    in a cluster)."""
    engine("secret", "rm", FEEDBACK_SECRET, check=False)
    data = work / "feedback-secret.json"
    data.write_text(json.dumps({"token": base64.b64encode(token.encode()).decode()}))
    engine("secret", "create", FEEDBACK_SECRET, str(data))
    data.unlink()


@pytest.fixture
def pod(tmp_path: Path, containers_artifacts: Path, feedback_token: str):
    if ENGINE != "podman":
        pytest.skip("`kube play` is podman's")
    (deployment,) = [o for o in build(DEPLOY / "k8s") if o["kind"] == "Deployment"]
    deployment["spec"]["replicas"] = 1  # one pod is the unit under test
    manifest = tmp_path / "deployment.yaml"
    manifest.write_text(yaml.safe_dump(deployment))
    create_feedback_secret(feedback_token, tmp_path)
    engine("kube", "play", "--replace", str(manifest), timeout=300)
    pod_name = f"{deployment['metadata']['name']}-pod-0"
    names = engine("ps", "--filter", f"pod={pod_name}", "--format", "{{.Names}}").split()
    containers = {n.removeprefix(f"{pod_name}-"): n for n in names if not n.endswith("-infra")}
    try:
        yield containers
    finally:
        logs = containers_artifacts / "pod"
        logs.mkdir(parents=True, exist_ok=True)
        for role, name in containers.items():
            (logs / f"{role}.log").write_text(engine("logs", name, check=False))
        engine("kube", "down", str(manifest), timeout=120)
        engine("secret", "rm", FEEDBACK_SECRET, check=False)


def test_sidecar_pod_serves_and_its_monitor_reads_the_shared_event_log(
    pod: dict, feedback_token: str
) -> None:
    assert set(pod) == {"service", "monitor"}
    stack = Stack("pod", [])  # exec only
    service, monitor = pod["service"], pod["monitor"]
    wait_until(
        lambda: http_get_in(stack, service, "http://127.0.0.1:3000/readyz") is not None,
        120,
        "service ready",
    )
    wait_until(lambda: http_get_in(stack, monitor, "http://127.0.0.1:3002/healthz"), 120, "monitor")
    for name in (service, monitor):
        config = inspect(name)
        assert config["HostConfig"]["ReadonlyRootfs"] is True, name
        assert config["Config"]["User"].split(":")[0] == str(BENTO_UID), name
        assert not config["HostConfig"]["CapAdd"], name

    # One prediction, sent inside the pod (its network is the pod's own), then read back
    # from the monitor: the event crossed the shared emptyDir.
    post = (
        "import json, urllib.request; body = json.dumps({'instances': [{'text': 'a b c', "
        "'request_id': 'pod-1'}]}).encode(); request = urllib.request.Request("
        "'http://127.0.0.1:3000/predict', body, {'Content-Type': 'application/json'}); "
        "print(urllib.request.urlopen(request, timeout=30).status)"
    )
    assert stack.exec(service, "python", "-c", post).strip() == "200"

    def ingested():
        status = json.loads(http_get_in(stack, monitor, "http://127.0.0.1:3002/status"))
        return status["counters"].get("events_prediction") == 1

    wait_until(ingested, 60, "the monitor to ingest the prediction")

    # /feedback takes the token of the Secret, and only it.
    feedback = (
        "import json, sys, urllib.request, urllib.error; body = json.dumps({'labels': "
        "[{'request_id': 'pod-1', 'label': 'x'}]}).encode(); headers = {'Content-Type': "
        "'application/json'}; headers.update({'Authorization': 'Bearer ' + sys.argv[1]} "
        "if sys.argv[1] else {}); request = urllib.request.Request("
        "'http://127.0.0.1:3000/feedback', body, headers)\ntry: print(urllib.request.urlopen("
        "request, timeout=30).status)\nexcept urllib.error.HTTPError as e: print(e.code)"
    )
    assert stack.exec(service, "python", "-c", feedback, "").strip() == "401"
    # the token passes; the unknown label is then the request's only fault
    assert stack.exec(service, "python", "-c", feedback, feedback_token).strip() == "400"
