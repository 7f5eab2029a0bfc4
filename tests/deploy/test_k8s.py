"""deploy/k8s/: built-in kinds against Kubernetes' schemas (kubernetes-validate, offline),
the PrometheusRule against its vendored CRD schema, the ServiceMonitor structurally, and the
generated files against their sources.

ServiceMonitor: checked structurally (the fields used, and that its selector, ports and job
names line up with the Service, the Deployment and prometheus.yml); its CRD schema is not
vendored. PrometheusRule: validated against the openAPIV3Schema of the prometheus-operator
CRD vendored in tests/deploy/schemas/ (source named there), and its spec is alerts.yml.
"""

from __future__ import annotations

import importlib.util
import json

import jsonschema
import kubernetes_validate
import pytest
import yaml

from shiftwatch.settings import MonitorSettings, ServiceSettings
from tests.deploy.dashboards import ALERTS, DASHBOARDS
from tests.deploy.tools import DEPLOY

pytestmark = pytest.mark.unit

K8S = DEPLOY / "k8s"
MANIFESTS = sorted(K8S.glob("*.yaml"))
CRDS = {"ServiceMonitor", "PrometheusRule"}
# The oldest Kubernetes these manifests claim (ContainerResource HPA metrics are GA in 1.30),
# and the newest kubernetes-validate ships.
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
CRD_SCHEMA = DEPLOY.parent / "tests/deploy/schemas/monitoring.coreos.com_prometheusrules.yaml"


def documents() -> list[dict]:
    docs = []
    for path in MANIFESTS:
        if path.name != "kustomization.yaml":
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def find(kind: str, name: str | None = None) -> dict:
    (doc,) = [d for d in documents() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    return doc


def containers() -> dict[str, dict]:
    spec = find("Deployment")["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec["containers"]}


def env(container: dict) -> dict[str, str | None]:
    """name -> value; None for a value from elsewhere (a Secret)."""
    return {e["name"]: e.get("value") for e in container["env"]}


def renderer():
    spec = importlib.util.spec_from_file_location("render", K8S / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("version", VERSIONS)
def test_builtin_kinds_are_valid_kubernetes(version: str) -> None:
    checked = set()
    for doc in documents():
        if doc["kind"] in CRDS:
            continue
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any error
        checked.add(doc["kind"])
    assert checked == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "NetworkPolicy",
    }


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in MANIFESTS} - {"kustomization.yaml"}


def test_generated_files_are_up_to_date() -> None:
    render = renderer()
    for path, build in render.RENDERED.items():
        assert path.read_text() == build(), f"{path.name}: run python deploy/k8s/render.py"
    assert render.main(["--check"]) == 0


def test_prometheus_rule_is_alerts_yml_and_valid_against_its_crd() -> None:
    rule = find("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())
    crd = next(d for d in yaml.safe_load_all(CRD_SCHEMA.read_text()) if d)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    validator = jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"])
    assert [e.message for e in validator.iter_errors(rule)] == []
    broken = {**rule, "spec": {"groups": [{"name": "g", "rules": [{"for": "5 minutes"}]}]}}
    assert list(validator.iter_errors(broken))  # the schema does reject bad rules


def test_dashboards_configmap_holds_the_dashboard_files_unchanged() -> None:
    configmap = find("ConfigMap", "shiftwatch-dashboards")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["data"] == {p.name: p.read_text() for p in DASHBOARDS}
    for text in configmap["data"].values():
        json.loads(text)


def test_service_monitor_selects_the_metrics_service_and_its_ports() -> None:
    monitor = find("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel", "sampleLimit"}
    metrics = find("Service", "shiftwatch-metrics")
    labels = metrics["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    # no other Service matches: the client Service would scrape ready pods only
    client = find("Service", "shiftwatch")
    assert not spec["selector"]["matchLabels"].items() <= client["metadata"]["labels"].items()
    ports = {p["name"]: p for p in metrics["spec"]["ports"]}
    jobs = {}
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scheme", "relabelings"}
        assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
        (relabel,) = endpoint["relabelings"]
        assert relabel == {
            "action": "replace",
            "targetLabel": "job",
            "replacement": relabel["replacement"],
        }
        jobs[endpoint["port"]] = relabel["replacement"]
    # the same job names as prometheus.yml, which dashboards and alerts rely on
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert set(jobs.values()) == {job["job_name"] for job in config["scrape_configs"]}
    # Service target ports name container ports of the Deployment
    container_ports = {
        p["name"]: p["containerPort"] for c in containers().values() for p in c["ports"]
    }
    for port in ports.values():
        assert port["targetPort"] in container_ports
        assert port["port"] == container_ports[port["targetPort"]]
    assert container_ports["monitor"] == int(
        env(containers()["monitor"])["SHIFTWATCH_MONITOR_PORT"]
    )


def test_services_select_the_deployment_pods() -> None:
    pod_labels = find("Deployment")["spec"]["template"]["metadata"]["labels"]
    for service in (find("Service", "shiftwatch"), find("Service", "shiftwatch-metrics")):
        assert service["spec"]["selector"].items() <= pod_labels.items()
    budget = find("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_probes_resources_and_security() -> None:
    pod = find("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1034  # the Bento image's user
    service, monitor = containers()["service"], containers()["monitor"]
    assert service["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert service["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert monitor["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "monitor"}
    # a monitor that is down must not take the service out of rotation
    assert "readinessProbe" not in monitor
    for container in (service, monitor):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), container["name"]
        # BentoML writes to its home: on a volume, since the root filesystem is read-only
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert env(container)["BENTOML_HOME"] in mounts and "/tmp" in mounts


def test_monitor_sidecar_shares_the_event_log_and_runs_from_the_bento() -> None:
    service, monitor = containers()["service"], containers()["monitor"]
    events = env(service)["SHIFTWATCH_EVENT_LOG_DIR"]
    assert env(monitor)["SHIFTWATCH_MONITOR_EVENT_LOG_DIR"] == events
    service_mounts = {m["mountPath"]: m for m in service["volumeMounts"]}
    monitor_mounts = {m["mountPath"]: m for m in monitor["volumeMounts"]}
    assert service_mounts[events]["name"] == monitor_mounts[events]["name"] == "events"
    assert monitor_mounts[events]["readOnly"] is True
    state_dir = env(monitor)["SHIFTWATCH_MONITOR_STATE_PATH"].rsplit("/", 1)[0]
    assert state_dir in monitor_mounts
    volumes = {v["name"]: v for v in find("Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["events"]
    assert set(env(service)) - {"BENTOML_HOME"} <= {
        "SHIFTWATCH_" + n.upper() for n in ServiceSettings.model_fields
    }
    assert set(env(monitor)) - {"BENTOML_HOME"} <= {
        "SHIFTWATCH_MONITOR_" + n.upper() for n in MonitorSettings.model_fields
    }
    assert env(monitor)["SHIFTWATCH_MONITOR_HOST"] == "0.0.0.0"  # scraped from outside the pod
    # Each image's own entrypoint (the Bento's `bentoml serve`, the monitor image's monitor),
    # the images of docker compose; tests/containers runs this pod with podman.
    for container in (service, monitor):
        assert not {"command", "args", "workingDir"} & set(container)
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    assert service["image"] == "shiftwatch:latest"
    assert compose["service"]["image"] == "${SHIFTWATCH_IMAGE:-shiftwatch:latest}"
    assert monitor["image"] == "shiftwatch-monitor:latest"
    assert compose["monitor"]["image"] == "${SHIFTWATCH_MONITOR_IMAGE:-shiftwatch-monitor:latest}"


def test_autoscaler_scales_the_deployment_on_the_service_container() -> None:
    hpa = find("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": find("Deployment")["metadata"]["name"],
    }
    (metric,) = hpa["metrics"]
    assert metric["containerResource"]["container"] == "service"
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
