"""deploy/k8s and deploy/k8s-fleet as built (tests/deploy/kustomize.py), for their security
posture: network policies (default deny; the API from the gateway and Prometheus, the monitor
from Prometheus, nothing out but DNS and, in fleet mode, Redis), secrets (the /feedback token and
the Redis password from Secrets the user creates, none shipped, none on a command line) and
images that can be pinned by digest."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deploy import kustomize
from tests.deploy.netpol import Pod, allowed, selects
from tests.deploy.test_k8s import VERSIONS
from tests.deploy.tools import DEPLOY

BASE, FLEET = DEPLOY / "k8s", DEPLOY / "k8s-fleet"
README = DEPLOY / "README.md"
NAMESPACE = "shiftwatch"  # where the objects are applied (any one namespace)
GATEWAY = Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
PROMETHEUS = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
DNS = Pod("kube-system", {"k8s-app": "kube-dns"}, {"dns": 53})
NEIGHBOUR = Pod(NAMESPACE, {"app.kubernetes.io/name": "something-else"})  # same namespace
ELSEWHERE = Pod("default", {"app": "client"})
OUTSIDE = Pod("internet", {}, {"https": 443})  # any address the policies do not name


@pytest.fixture(scope="module", params=[BASE, FLEET], ids=["base", "fleet"])
def built(request: pytest.FixtureRequest) -> tuple[Path, list[dict]]:
    return request.param, kustomize.build(request.param)


def workload_pods(objects: list[dict]) -> dict[str, Pod]:
    """Each Deployment's or StatefulSet's pod: name -> Pod (labels, container ports)."""
    pods = {}
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            template = obj["spec"]["template"]
            ports = {
                p["name"]: p["containerPort"]
                for c in template["spec"]["containers"]
                for p in c.get("ports", [])
            }
            pods[obj["metadata"]["name"]] = Pod(NAMESPACE, template["metadata"]["labels"], ports)
    return pods


def policies(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] == "NetworkPolicy"]


@pytest.mark.unit
def test_every_shiftwatch_pod_is_denied_by_default(built) -> None:
    _, objects = built
    default_deny = [
        p
        for p in policies(objects)
        if set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert len(default_deny) == 1, [p["metadata"]["name"] for p in policies(objects)]
    (deny,) = default_deny
    for name, pod in workload_pods(objects).items():
        assert policy_selects(deny, pod), name
    # ...and no other pod of the namespace: shiftwatch may share it
    assert not policy_selects(deny, NEIGHBOUR)


def policy_selects(policy: dict, pod: Pod) -> bool:
    return selects(policy["spec"]["podSelector"], pod.labels)


@pytest.mark.unit
def test_api_from_the_gateway_and_prometheus_monitor_from_prometheus_only(built) -> None:
    root, objects = built
    rules, pods = policies(objects), workload_pods(objects)
    service = pods["shiftwatch"]
    assert service.ports["http"] == 3000
    for peer, expected in [
        (GATEWAY, True),
        (PROMETHEUS, True),
        (NEIGHBOUR, False),
        (ELSEWHERE, False),
        (pods.get("shiftwatch-monitor", NEIGHBOUR), False),
    ]:
        assert allowed(rules, peer, service, 3000) is expected, (peer, expected)
    monitor = pods["shiftwatch-monitor"] if root == FLEET else service
    assert monitor.ports["monitor"] == 3002
    for peer, expected in [
        (PROMETHEUS, True),
        (GATEWAY, False),
        (NEIGHBOUR, False),
        (ELSEWHERE, False),
    ]:
        assert allowed(rules, peer, monitor, 3002) is expected, (peer, expected)
    # no other port of theirs is open to anyone
    for pod in {id(p): p for p in (service, monitor)}.values():
        for port in (22, 8080, 9090):
            assert not allowed(rules, PROMETHEUS, pod, port)


@pytest.mark.unit
def test_nothing_goes_out_but_dns_and_redis(built) -> None:
    root, objects = built
    rules, pods = policies(objects), workload_pods(objects)
    for name, pod in pods.items():
        assert allowed(rules, pod, DNS, 53, "UDP") and allowed(rules, pod, DNS, 53, "TCP"), name
        assert not allowed(rules, pod, OUTSIDE, 443), name
        assert not allowed(rules, pod, OUTSIDE, 53, "UDP"), name  # the cluster's DNS only
        assert not allowed(rules, pod, ELSEWHERE, 3000), name
    if root == FLEET:
        redis = pods["shiftwatch-redis"]
        for name in ("shiftwatch", "shiftwatch-monitor"):
            assert allowed(rules, pods[name], redis, 6379), name
            assert not allowed(rules, pods[name], redis, 6380), name
        for peer in (GATEWAY, PROMETHEUS, NEIGHBOUR):
            assert not allowed(rules, peer, redis, 6379), peer
        assert not allowed(rules, redis, pods["shiftwatch"], 3000)  # Redis calls no one


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.unit
def test_network_policies_are_valid_kubernetes(built, version: str) -> None:
    _, objects = built
    assert policies(objects)
    for policy in policies(objects):
        kubernetes_validate.validate(policy, version, strict=True)


def secret_refs(objects: list[dict]) -> dict[str, set[tuple[str, str]]]:
    """container name -> every (Secret, key) its environment reads."""
    refs: dict[str, set[tuple[str, str]]] = {}
    for obj in objects:
        for container in kustomize.pod_containers(obj):
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.setdefault(container["name"], set()).add((ref["name"], ref["key"]))
    return refs


@pytest.mark.unit
def test_feedback_token_comes_from_a_secret_and_nothing_opens_feedback(built) -> None:
    _, objects = built
    (deployment,) = [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "shiftwatch"
    ]
    (service,) = [c for c in kustomize.pod_containers(deployment) if c["name"] == "service"]
    variables = {e["name"]: e for e in service["env"]}
    assert variables["SHIFTWATCH_FEEDBACK_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "shiftwatch-feedback", "key": "token"}
    }
    text = yaml.safe_dump_all(objects)
    assert "SHIFTWATCH_FEEDBACK_OPEN" not in text


@pytest.mark.unit
def test_no_secret_is_shipped_and_the_readme_says_how_to_create_each(built) -> None:
    """The Secrets are the user's to create (a template with a placeholder password was
    applied as is too easily): none in the build, and deploy/README.md's commands create
    every Secret and key the containers read."""
    _, objects = built
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "Secret"] == []
    assert "CHANGE-ME" not in yaml.safe_dump_all(objects)
    created = {
        (name, key)
        for name, keys in re.findall(
            r"kubectl create secret generic (\S+)((?: \\?\s*--from-file=\S+)+)", README.read_text()
        )
        for key in re.findall(r"--from-file=([^=\s]+)=", keys)
    }
    needed = set().union(*secret_refs(objects).values())
    assert needed and needed <= created, needed - created


@pytest.mark.unit
def test_no_secret_on_a_command_line(built) -> None:
    """Kubernetes expands $(VAR) in command and args: a variable from a Secret there puts the
    secret on the process's command line (visible in ps, /proc). Redis gets its password on
    stdin instead."""
    _, objects = built
    for obj in objects:
        for container in kustomize.pod_containers(obj):
            from_secrets = {
                e["name"]
                for e in container.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})
            }
            words = " ".join(container.get("command", []) + container.get("args", []))
            for name in from_secrets:
                assert f"$({name})" not in words, (container["name"], name)
            assert "--requirepass" not in words and "-a " not in words, container["name"]


@pytest.mark.unit
def test_redis_reads_its_password_from_the_secret_on_stdin() -> None:
    objects = kustomize.build(FLEET)
    (statefulset,) = [o for o in objects if o["kind"] == "StatefulSet"]
    (redis,) = kustomize.pod_containers(statefulset)
    assert redis["command"][:2] == ["sh", "-c"]
    script = redis["command"][2]
    # `redis-server -`: configuration on stdin, a here-document with the password
    first = script.splitlines()[0].split()
    assert first[:3] == ["exec", "redis-server", "-"] and first[-1] == "<<EOF"
    assert "requirepass $$REDIS_PASSWORD" in script.splitlines()  # $$: the kubelet's escape
    variables = {e["name"]: e for e in redis["env"]}
    for name in ("REDIS_PASSWORD", "REDISCLI_AUTH"):  # the server's, the probes' redis-cli
        assert variables[name]["valueFrom"] == {
            "secretKeyRef": {"name": "shiftwatch-redis", "key": "password"}
        }


@pytest.mark.integration
def test_a_real_shell_gives_redis_the_password_on_stdin_only(tmp_path: Path) -> None:
    """The StatefulSet's script under sh, with `redis-server` a stub recording its argv and
    stdin: the password reaches stdin, never argv."""
    objects = kustomize.build(FLEET)
    (statefulset,) = [o for o in objects if o["kind"] == "StatefulSet"]
    (redis,) = kustomize.pod_containers(statefulset)
    script = redis["command"][2].replace("$$", "$")  # what the kubelet hands to sh
    stub = tmp_path / "redis-server"
    stub.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\ncat > {tmp_path}/stdin\n')
    stub.chmod(0o755)
    password = "pw-" + hashlib.sha256(b"redis").hexdigest()[:16]
    subprocess.run(
        ["sh", "-c", script],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin", "REDIS_PASSWORD": password},
        check=True,
        timeout=10,
    )
    argv = (tmp_path / "argv").read_text()
    assert password not in argv and argv.split()[:3] == ["-", "--appendonly", "yes"]
    assert (tmp_path / "stdin").read_text() == f"requirepass {password}\n"


@pytest.mark.integration
def test_images_can_be_pinned_by_digest(tmp_path: Path) -> None:
    """What `kustomize edit set image shiftwatch=REGISTRY/shiftwatch@sha256:...` writes into the
    overlay's kustomization: every container then runs the image by digest (checked with the
    real kustomize too where one is installed). The digest is a made-up, well-formed one."""
    digest = "sha256:" + hashlib.sha256(b"not a real image").hexdigest()
    kustomization = yaml.safe_load((FLEET / "kustomization.yaml").read_text())
    shutil.copytree(BASE, tmp_path / BASE.name)  # the overlay's ../k8s, as in deploy/
    overlay = tmp_path / FLEET.name
    shutil.copytree(FLEET, overlay)
    kustomization["images"] = [
        {"name": name, "newName": f"registry.example/{name}", "digest": digest}
        for name in ("shiftwatch", "shiftwatch-monitor")
    ]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    emulated = kustomize.build(overlay)
    images = {c["image"] for o in emulated for c in kustomize.pod_containers(o)}
    assert images == {
        f"registry.example/shiftwatch@{digest}",
        f"registry.example/shiftwatch-monitor@{digest}",
        "redis:7.2-alpine",
    }
    for obj in emulated:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            kubernetes_validate.validate(obj, VERSIONS[0], strict=True)
    tool = shutil.which("kustomize") or shutil.which("kubectl")
    if tool is None:
        return
    command = (
        [tool, "build", str(overlay)]
        if tool.endswith("kustomize")
        else [tool, "kustomize", str(overlay)]
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    real = {
        c["image"]
        for d in yaml.safe_load_all(result.stdout)
        if d
        for c in kustomize.pod_containers(d)
    }
    assert real == images
