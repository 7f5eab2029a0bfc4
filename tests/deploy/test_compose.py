"""deploy/docker-compose.yml against the Compose Specification schema, then cross-checked.

The schema is the compose-spec JSON schema that check-jsonschema ships (its vendored copy
`compose-spec.json`, from the compose-spec project); no network at test time.
"""

from __future__ import annotations

import json
import shlex
from importlib.resources import files

import jsonschema
import pytest
import yaml

from shiftwatch.settings import MonitorSettings, ServiceSettings
from tests.deploy.tools import DEPLOY, setting_names
from tests.test_dependency_rules import IMAGE_ENTRIES

pytestmark = pytest.mark.unit

COMPOSE = DEPLOY / "docker-compose.yml"
EVENTS = "/var/lib/shiftwatch/events"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def compose_schema() -> dict:
    vendored = files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(vendored.read_text())


def test_compose_file_is_valid_against_the_compose_spec(compose: dict) -> None:
    validator = jsonschema.Draft202012Validator(
        compose_schema(), format_checker=jsonschema.FormatChecker()
    )
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # and the schema is strict enough to catch a misspelled key
    broken = {**compose, "services": {**compose["services"], "x": {"image": "a", "helthcheck": {}}}}
    assert list(validator.iter_errors(broken))


def test_service_and_monitor_run_their_images_own_entrypoints(compose: dict) -> None:
    """The serving image (the Bento: `bentoml serve`) and the monitor image built on it; no
    override, so what the images run is what tests/containers ran. The monitor image's
    entrypoint is the module the dependency test walks (tests/test_dependency_rules.py)."""
    service, monitor = compose["services"]["service"], compose["services"]["monitor"]
    assert service["image"] == "${SHIFTWATCH_IMAGE:-shiftwatch:latest}"
    assert monitor["image"] == "${SHIFTWATCH_MONITOR_IMAGE:-shiftwatch-monitor:latest}"
    for spec in (service, monitor):
        assert not {"command", "entrypoint", "working_dir"} & set(spec)
    containerfile = (DEPLOY / "images" / "monitor.Containerfile").read_text()
    assert 'ENTRYPOINT ["/usr/local/bin/shiftwatch-monitor"]' in containerfile
    assert "WORKDIR /home/bentoml/bento/src" in containerfile  # the Bento's sources
    script = (DEPLOY / "images" / "monitor-entrypoint.sh").read_text()
    assert shlex.split(script.strip().splitlines()[-1]) == [
        "exec",
        "python",
        "-m",
        IMAGE_ENTRIES["monitor"].removesuffix(".__main__"),
        "$@",
    ]


def test_environment_names_are_real_settings(compose: dict) -> None:
    services = compose["services"]
    service_env = set(services["service"]["environment"]) - {"BENTOML_HOME"}
    monitor_env = set(services["monitor"]["environment"]) - {"BENTOML_HOME"}
    assert service_env <= setting_names(ServiceSettings, "SHIFTWATCH_")
    assert monitor_env <= setting_names(MonitorSettings, "SHIFTWATCH_MONITOR_")
    assert services["monitor"]["environment"]["SHIFTWATCH_MONITOR_HOST"] == "0.0.0.0"


def test_service_and_monitor_share_the_event_log_volume(compose: dict) -> None:
    service, monitor = compose["services"]["service"], compose["services"]["monitor"]
    assert service["environment"]["SHIFTWATCH_EVENT_LOG_DIR"] == EVENTS
    assert monitor["environment"]["SHIFTWATCH_MONITOR_EVENT_LOG_DIR"] == EVENTS
    mount = "shiftwatch-data:/var/lib/shiftwatch"
    assert mount in service["volumes"] and mount in monitor["volumes"]
    assert "shiftwatch-data" in compose["volumes"]
    state = monitor["environment"]["SHIFTWATCH_MONITOR_STATE_PATH"]
    assert state.startswith("/var/lib/shiftwatch/")  # on the volume: survives restarts
    # BENTOML_HOME is writable although the root filesystem is read-only
    for name in ("service", "monitor"):
        spec = compose["services"][name]
        assert spec["read_only"] is True
        # under /tmp, the one tmpfs podman recreates writable when the container restarts
        assert (
            spec["environment"]["BENTOML_HOME"].startswith("/tmp/") and "/tmp" in spec["tmpfs"]
        ), name


def test_health_checks_and_start_order(compose: dict) -> None:
    services = compose["services"]
    checks = {
        name: " ".join(spec["healthcheck"]["test"])
        for name, spec in services.items()
        if "healthcheck" in spec
    }
    assert "/readyz" in checks["service"] and ":3000" in checks["service"]
    port = services["monitor"]["environment"]["SHIFTWATCH_MONITOR_PORT"]
    assert "/healthz" in checks["monitor"] and f":{port}" in checks["monitor"]
    assert "/-/ready" in checks["prometheus"] and "/api/health" in checks["grafana"]
    for name, spec in services.items():
        for dependency, condition in spec.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            if condition["condition"] == "service_healthy":
                assert dependency in checks, f"{name} waits on {dependency}, which has no check"
    assert services["monitor"]["depends_on"]["service"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_bind_mounts_exist_and_prometheus_scrapes_the_compose_services(compose: dict) -> None:
    for name, spec in compose["services"].items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), (name, source)
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {
        t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    }
    port = compose["services"]["monitor"]["environment"]["SHIFTWATCH_MONITOR_PORT"]
    assert targets == {"service:3000", f"monitor:{port}"}
