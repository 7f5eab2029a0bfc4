"""deploy/docker-compose.yml against the Compose Specification schema, then cross-checked.

The schema is the compose-spec JSON schema that check-jsonschema ships (its vendored copy
`compose-spec.json`, from the compose-spec project); no network at test time.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from importlib.resources import files

import jsonschema
import pytest
import yaml

from shiftwatch.settings import MonitorSettings, ServiceSettings
from tests.deploy.tools import (
    DEPLOY,
    secret_value,
    setting_names,
    settings_in,
    with_secret_files,
)
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


# -- security posture of both compose files ------------------------------------------------

COMPOSE_FILES = {"single": COMPOSE, "fleet": DEPLOY / "docker-compose.fleet.yml"}
LIMITS = ("mem_limit", "cpus", "pids_limit")


@pytest.fixture(scope="module", params=sorted(COMPOSE_FILES))
def any_compose(request: pytest.FixtureRequest) -> dict:
    return yaml.safe_load(COMPOSE_FILES[request.param].read_text())


def test_every_container_drops_capabilities_and_is_limited(any_compose: dict) -> None:
    """cap_drop ALL (none added back), no-new-privileges, and memory, CPU and process limits
    on every container; tests/containers runs them so (podman applies all three limits)."""
    for name, spec in any_compose["services"].items():
        assert spec.get("cap_drop") == ["ALL"], name
        assert "cap_add" not in spec and "privileged" not in spec, name
        assert "no-new-privileges:true" in spec.get("security_opt", []), name
        missing = [limit for limit in LIMITS if limit not in spec]
        assert missing == [], (name, missing)
        assert 0 < float(spec["cpus"]) <= 2, name  # a 2-core machine runs them all
        assert int(spec["pids_limit"]) >= 64, name


def test_feedback_token_comes_from_a_secret_file(
    any_compose: dict, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """No compose file serves an open /feedback: the service reads the token from the compose
    secret's file, which the settings turn into the required bearer token."""
    assert any_compose["secrets"]["feedback_token"] == {
        "file": "${SHIFTWATCH_SECRETS_DIR:-./secrets}/feedback_token"
    }
    service = any_compose["services"]["service"]
    assert "feedback_token" in service["secrets"]
    environment = service["environment"]
    assert environment["SHIFTWATCH_FEEDBACK_TOKEN_FILE"] == "/run/secrets/feedback_token"
    for spec in any_compose["services"].values():
        assert "SHIFTWATCH_FEEDBACK_OPEN" not in spec.get("environment", {})
        assert "SHIFTWATCH_FEEDBACK_TOKEN" not in spec.get("environment", {})
    settings, _ = settings_in(with_secret_files(environment, tmp_path), monkeypatch)
    assert settings.feedback_access() == secret_value("feedback_token")


def test_grafana_admin_password_comes_from_a_secret_file(any_compose: dict) -> None:
    grafana = any_compose["services"]["grafana"]
    assert grafana["secrets"] == ["grafana_admin_password"]
    path = grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"]
    assert path == "/run/secrets/grafana_admin_password"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana["environment"]
    assert any_compose["secrets"]["grafana_admin_password"] == {
        "file": "${SHIFTWATCH_SECRETS_DIR:-./secrets}/grafana_admin_password"
    }


def test_no_secret_value_in_the_files_environment_or_command_lines(any_compose: dict) -> None:
    """Secrets reach the containers as files only: every variable naming a password, token
    or secret points at /run/secrets/, every declared secret is a file, and no command line
    carries a password option."""
    for name, spec in any_compose["services"].items():
        for variable, value in spec.get("environment", {}).items():
            if any(word in variable.upper() for word in ("PASSWORD", "TOKEN", "SECRET")):
                assert str(value).startswith("/run/secrets/"), (name, variable)
        for secret in spec.get("secrets", []):
            assert secret in any_compose["secrets"], (name, secret)
        command = spec.get("command", [])
        words = " ".join(command if isinstance(command, list) else [command])
        words += " " + " ".join(spec.get("healthcheck", {}).get("test", []))
        assert "--requirepass" not in words and " -a " not in words, name
    assert all(set(s) == {"file"} for s in any_compose["secrets"].values())


def test_secrets_script_writes_every_secret_the_compose_files_declare(tmp_path) -> None:
    declared = {
        name
        for path in COMPOSE_FILES.values()
        for name in yaml.safe_load(path.read_text())["secrets"]
    }
    folder = tmp_path / "secrets"
    result = subprocess.run(
        [str(DEPLOY / "secrets.sh"), str(folder)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    written = {path.name: path.read_text() for path in folder.iterdir()}
    assert set(written) == declared
    assert all(re.fullmatch(r"[0-9a-f]{64}", value) for value in written.values()), written
    assert len(set(written.values())) == len(written)  # random, one each
    assert folder.stat().st_mode & 0o777 == 0o700
    again = subprocess.run([str(DEPLOY / "secrets.sh"), str(folder)], check=True, timeout=30)
    assert again.returncode == 0
    assert {p.name: p.read_text() for p in folder.iterdir()} == written  # never overwritten
    ignored = (DEPLOY.parent / ".gitignore").read_text().splitlines()
    assert "deploy/secrets/" in ignored  # the default folder stays out of version control
