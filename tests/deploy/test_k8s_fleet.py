"""deploy/k8s-fleet/: the base with the monitor moved out of the pods, Redis Streams between them.

Built with the emulated `kustomize build` of tests/deploy/kustomize.py (compared with the real
one where a kustomize binary is on PATH), then: every built-in object valid against
Kubernetes' schemas as in test_k8s.py, the service pods without a monitor, one monitor
Deployment on a persistent volume, Redis persisted, both sides on the same transport
settings, and the base's ServiceMonitor scraping every replica and the monitor.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from shiftwatch.settings import MonitorSettings, ServiceSettings
from tests.deploy import kustomize
from tests.deploy.test_k8s import CRDS, VERSIONS
from tests.deploy.tools import (
    DEPLOY,
    optional_tool,
    redis_server_args,
    setting_names,
    settings_in,
)

BASE = DEPLOY / "k8s"
FLEET = DEPLOY / "k8s-fleet"
STATE_DIR = "/var/lib/shiftwatch/monitor"
README = DEPLOY / "README.md"
PASSWORD = "0123456789abcdef" * 4  # what deploy/secrets.sh writes: hex


def redis_url_template() -> str:
    """The printf format deploy/README.md builds the Secret's `url` key with."""
    (template,) = re.findall(r"printf '(redis://[^']*)'", README.read_text())
    return template


def user_secrets() -> dict[str, dict]:
    """The Secrets as deploy/README.md's commands create them (none ships with the manifests)."""
    return {
        "shiftwatch-feedback": {"stringData": {"token": "feedback-token"}},
        "shiftwatch-redis": {
            "stringData": {"password": PASSWORD, "url": redis_url_template() % PASSWORD}
        },
    }


@pytest.fixture(scope="module")
def fleet() -> dict[tuple[str, str], dict]:
    return {kustomize.key(obj): obj for obj in kustomize.build(FLEET)}


@pytest.fixture(scope="module")
def base() -> dict[tuple[str, str], dict]:
    return {kustomize.key(obj): obj for obj in kustomize.build(BASE)}


def pod(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def pod_labels(workload: dict) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def containers(workload: dict) -> dict[str, dict]:
    return {c["name"]: c for c in pod(workload)["containers"]}


def env(container: dict) -> dict[str, dict]:
    """name -> the entry without its name ({"value": ...} or {"valueFrom": ...})."""
    return {e["name"]: {k: v for k, v in e.items() if k != "name"} for e in container["env"]}


def plain_env(container: dict, secrets: dict[str, dict]) -> dict[str, str]:
    """The environment the container sees, secret references resolved from `secrets`."""
    resolved = {}
    for name, entry in env(container).items():
        if "value" in entry:
            resolved[name] = entry["value"]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            resolved[name] = secrets[ref["name"]]["stringData"][ref["key"]]
    return resolved


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def normalized(value: object) -> object:
    """Lists of objects in a stable order: kustomize places items a patch adds differently."""
    if isinstance(value, dict):
        return {k: normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [normalized(v) for v in value]
        if all(isinstance(v, dict) for v in items):
            return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
        return items
    return value


@pytest.mark.unit
@pytest.mark.parametrize("version", VERSIONS)
def test_fleet_builtin_kinds_are_valid_kubernetes(fleet: dict, version: str) -> None:
    checked = set()
    for obj in fleet.values():
        if obj["kind"] in CRDS:
            continue
        kubernetes_validate.validate(obj, version, strict=True)  # raises on any error
        checked.add(obj["kind"])
    assert checked == {
        "Deployment",
        "StatefulSet",
        "Service",
        "PersistentVolumeClaim",
        "NetworkPolicy",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
    }


@pytest.mark.unit
def test_overlay_builds_on_the_base_and_lists_every_file() -> None:
    kustomization = yaml.safe_load((FLEET / "kustomization.yaml").read_text())
    assert "../k8s" in kustomization["resources"]
    used = set(kustomization["resources"]) | {p["path"] for p in kustomization["patches"]}
    assert {p.name for p in FLEET.glob("*.yaml")} - {"kustomization.yaml"} == used - {"../k8s"}
    # the overlay sets the image for the base's Deployment and its own alike
    assert [i["name"] for i in kustomization["images"]] == ["shiftwatch", "shiftwatch-monitor"]


@pytest.mark.integration
@pytest.mark.parametrize("root", [BASE, FLEET], ids=["base", "fleet"])
def test_emulated_build_matches_kustomize(root) -> None:
    if shutil.which("kustomize"):
        command = ["kustomize", "build", str(root)]
    else:  # kubectl's built-in kustomize
        command = [optional_tool("kubectl"), "kustomize", str(root)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    real = {kustomize.key(d): d for d in yaml.safe_load_all(result.stdout) if d}
    emulated = {kustomize.key(d): d for d in kustomize.build(root)}
    assert set(emulated) == set(real)
    for name, obj in emulated.items():
        assert normalized(obj) == normalized(real[name]), name


@pytest.mark.unit
def test_service_pods_run_no_monitor_and_write_events_to_redis(fleet: dict, base: dict) -> None:
    deployment = fleet["Deployment", "shiftwatch"]
    (service,) = containers(deployment).values()
    assert service["name"] == "service"
    variables = env(service)
    assert variables["SHIFTWATCH_EVENT_TRANSPORT"] == {"value": "redis"}
    assert variables["SHIFTWATCH_REDIS_URL"] == {
        "valueFrom": {"secretKeyRef": {"name": "shiftwatch-redis", "key": "url"}}
    }
    assert "SHIFTWATCH_EVENT_LOG_DIR" not in variables
    # no event log, no monitor volumes left behind; every mount has its volume
    volumes = {v["name"] for v in pod(deployment)["volumes"]}
    assert volumes == {"bentoml-home", "tmp"}
    assert {m["name"] for m in service["volumeMounts"]} == volumes
    # the rest of the service container and of the pod is the base's
    base_deployment = base["Deployment", "shiftwatch"]
    base_service = containers(base_deployment)["service"]
    different = {"env", "volumeMounts"}
    assert {k: v for k, v in service.items() if k not in different} == {
        k: v for k, v in base_service.items() if k not in different
    }
    assert env(service)["BENTOML_HOME"] == env(base_service)["BENTOML_HOME"]
    assert set(variables) <= setting_names(ServiceSettings, "SHIFTWATCH_") | {"BENTOML_HOME"}
    for field in ("securityContext", "terminationGracePeriodSeconds"):
        assert pod(deployment)[field] == pod(base_deployment)[field]
    assert deployment["spec"]["strategy"] == base_deployment["spec"]["strategy"]


@pytest.mark.unit
def test_monitor_is_one_recreated_replica_with_its_state_on_a_claim(
    fleet: dict, base: dict
) -> None:
    deployment = fleet["Deployment", "shiftwatch-monitor"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    (monitor,) = containers(deployment).values()
    variables = env(monitor)
    state = variables["SHIFTWATCH_MONITOR_STATE_PATH"]["value"]
    assert state.rsplit("/", 1)[0] == STATE_DIR
    mounts = {m["mountPath"]: m["name"] for m in monitor["volumeMounts"]}
    volumes = {v["name"]: v for v in pod(deployment)["volumes"]}
    claim = volumes[mounts[STATE_DIR]]["persistentVolumeClaim"]["claimName"]
    pvc = fleet["PersistentVolumeClaim", claim]
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert set(mounts.values()) == set(volumes)
    # the sidecar's container, moved: same image, probes and security context
    sidecar = containers(base["Deployment", "shiftwatch"])["monitor"]
    assert not {"command", "args", "workingDir"} & set(monitor)  # the image's own entrypoint
    for field in ("image", "ports", "startupProbe", "livenessProbe"):
        assert monitor[field] == sidecar[field], field
    assert "readinessProbe" not in monitor
    assert monitor["securityContext"] == sidecar["securityContext"]
    assert (
        pod(deployment)["securityContext"]
        == pod(base["Deployment", "shiftwatch"])["securityContext"]
    )
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(monitor["resources"][kind])
    for name in ("BENTOML_HOME", "SHIFTWATCH_MONITOR_HOST", "SHIFTWATCH_MONITOR_PORT"):
        assert variables[name] == env(sidecar)[name], name
    assert {variables["BENTOML_HOME"]["value"], "/tmp"} <= set(mounts)
    assert set(variables) <= (
        setting_names(MonitorSettings, "SHIFTWATCH_MONITOR_")
        | setting_names(ServiceSettings, "SHIFTWATCH_")
        | {"BENTOML_HOME"}
    )
    # the pods of one Deployment are not the other's
    monitor_labels = pod_labels(deployment)
    service_labels = pod_labels(fleet["Deployment", "shiftwatch"])
    assert not selects(
        fleet["Deployment", "shiftwatch"]["spec"]["selector"]["matchLabels"], monitor_labels
    )
    assert not selects(deployment["spec"]["selector"]["matchLabels"], service_labels)
    assert not selects(
        fleet["PodDisruptionBudget", "shiftwatch"]["spec"]["selector"]["matchLabels"],
        monitor_labels,
    )


@pytest.mark.unit
def test_service_and_monitor_read_the_same_transport_settings(
    fleet: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = user_secrets()
    (service,) = containers(fleet["Deployment", "shiftwatch"]).values()
    (monitor,) = containers(fleet["Deployment", "shiftwatch-monitor"]).values()
    # the same entries, the URL from the same Secret key
    for name in ("SHIFTWATCH_EVENT_TRANSPORT", "SHIFTWATCH_REDIS_URL"):
        assert env(service)[name] == env(monitor)[name], name
    service_settings, _ = settings_in(plain_env(service, secrets), monkeypatch)
    _, monitor_settings = settings_in(plain_env(monitor, secrets), monkeypatch)
    assert service_settings.event_transport == monitor_settings.event_transport == "redis"
    assert service_settings.redis_url == monitor_settings.redis_url
    assert service_settings.redis_stream_prefix == monitor_settings.redis_stream_prefix
    assert monitor_settings.redis_group == "shiftwatch-monitor"


@pytest.mark.unit
def test_secret_points_at_the_redis_service_with_its_password(fleet: dict) -> None:
    """The `url` key deploy/README.md writes names the in-cluster Redis and carries the
    `password` key's value; Redis requires that password (from the same key)."""
    secret = user_secrets()["shiftwatch-redis"]["stringData"]
    url = urlsplit(secret["url"])
    service = fleet["Service", "shiftwatch-redis"]
    (port,) = service["spec"]["ports"]
    assert url.scheme == "redis"
    assert (url.hostname, url.port) == (service["metadata"]["name"], port["port"])
    assert url.password == secret["password"]
    redis = containers(fleet["StatefulSet", "shiftwatch-redis"])["redis"]
    assert env(redis)["REDIS_PASSWORD"] == {
        "valueFrom": {"secretKeyRef": {"name": "shiftwatch-redis", "key": "password"}}
    }
    assert "requirepass $$REDIS_PASSWORD" in redis["command"][2].splitlines()


@pytest.mark.unit
def test_redis_is_a_persistent_statefulset_behind_a_headless_service(fleet: dict) -> None:
    statefulset = fleet["StatefulSet", "shiftwatch-redis"]
    spec = statefulset["spec"]
    assert spec["replicas"] == 1
    service = fleet["Service", spec["serviceName"]]
    assert service["spec"]["clusterIP"] == "None"
    labels = pod_labels(statefulset)
    assert selects(service["spec"]["selector"], labels)
    assert selects(spec["selector"]["matchLabels"], labels)
    redis = containers(statefulset)["redis"]
    assert redis["image"].startswith("redis:7")
    assert redis["command"][:2] == ["sh", "-c"]
    args = redis_server_args(redis["command"][2])
    assert args[:2] == ["redis-server", "-"]  # the password on stdin
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"]: m["mountPath"] for m in redis["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/data"  # the image's working dir
    ports = {p["name"]: p["containerPort"] for p in redis["ports"]}
    (service_port,) = service["spec"]["ports"]
    assert ports[service_port["targetPort"]] == service_port["port"] == 6379
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = " ".join(redis[probe]["exec"]["command"])
        assert "redis-cli ping" in command and "PONG" in command, probe
    assert env(redis)["REDISCLI_AUTH"] == env(redis)["REDIS_PASSWORD"]  # the probes log in
    context = pod(statefulset)["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] == 999
    assert redis["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


@pytest.mark.unit
def test_only_the_service_and_monitor_pods_reach_redis(fleet: dict) -> None:
    policy = fleet["NetworkPolicy", "shiftwatch-redis"]["spec"]
    redis_labels = pod_labels(fleet["StatefulSet", "shiftwatch-redis"])
    assert selects(policy["podSelector"]["matchLabels"], redis_labels)
    (rule,) = policy["ingress"]
    (peer,) = rule["from"]
    assert {e["operator"] for e in peer["podSelector"]["matchExpressions"]} == {"In"}

    def admitted(labels: dict[str, str]) -> bool:
        return all(
            labels.get(e["key"]) in e["values"] for e in peer["podSelector"]["matchExpressions"]
        )

    for name in ("shiftwatch", "shiftwatch-monitor"):
        assert admitted(pod_labels(fleet["Deployment", name])), name
    assert not admitted(
        {"app.kubernetes.io/name": "shiftwatch", "app.kubernetes.io/component": "other"}
    )
    assert [p["port"] for p in rule["ports"]] == ["redis"]


@pytest.mark.unit
def test_service_monitor_scrapes_every_replica_and_the_monitor(fleet: dict, base: dict) -> None:
    # the base's ServiceMonitor, PrometheusRule and dashboards, unchanged
    for name in (
        ("ServiceMonitor", "shiftwatch"),
        ("PrometheusRule", "shiftwatch"),
        ("ConfigMap", "shiftwatch-dashboards"),
    ):
        assert fleet[name] == base[name], name
    spec = fleet["ServiceMonitor", "shiftwatch"]["spec"]
    selected = {
        name: obj
        for (kind, name), obj in fleet.items()
        if kind == "Service" and selects(spec["selector"]["matchLabels"], obj["metadata"]["labels"])
    }
    assert set(selected) == {"shiftwatch-metrics", "shiftwatch-monitor"}
    workloads = [obj for obj in fleet.values() if obj["kind"] in ("Deployment", "StatefulSet")]
    jobs = {e["port"]: e["relabelings"][0]["replacement"] for e in spec["endpoints"]}
    scraped = {}
    for name, service in selected.items():
        (workload,) = [w for w in workloads if selects(service["spec"]["selector"], pod_labels(w))]
        container_ports = {
            p["name"]: p["containerPort"] for c in pod(workload)["containers"] for p in c["ports"]
        }
        for port in service["spec"]["ports"]:
            # every port of a scraped Service is a metrics endpoint of the pods it selects
            assert port["name"] in jobs, (name, port["name"])
            assert container_ports[port["targetPort"]] == port["port"], (name, port["name"])
            scraped[jobs[port["name"]]] = workload["metadata"]["name"]
    assert scraped == {
        "shiftwatch-service": "shiftwatch",
        "shiftwatch-monitor": "shiftwatch-monitor",
    }
    monitor = containers(fleet["Deployment", "shiftwatch-monitor"])["monitor"]
    assert env(monitor)["SHIFTWATCH_MONITOR_PORT"] == {"value": "3002"}
    assert env(monitor)["SHIFTWATCH_MONITOR_HOST"] == {"value": "0.0.0.0"}
    # the autoscaler still scales the service Deployment on the service container
    hpa = fleet["HorizontalPodAutoscaler", "shiftwatch"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "shiftwatch"
    assert hpa["metrics"][0]["containerResource"]["container"] == "service"
