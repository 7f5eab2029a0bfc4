"""deploy/docker-compose.fleet.yml: the compose schema as in test_compose.py, then what makes it a
fleet: Redis persisted, replicas that `--scale` can multiply, one monitor on the same transport
settings as the service, a balancer and a Prometheus that find every replica."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from shiftwatch.settings import MonitorSettings, ServiceSettings
from tests.deploy.test_compose import compose_schema
from tests.deploy.tools import (
    DEPLOY,
    redis_server_args,
    secret_value,
    setting_names,
    settings_in,
    with_secret_files,
)

pytestmark = pytest.mark.unit

FLEET = DEPLOY / "docker-compose.fleet.yml"
SINGLE = DEPLOY / "docker-compose.yml"
HAPROXY = DEPLOY / "haproxy" / "haproxy.cfg"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.fleet.yml"
STATE_DIR = "/var/lib/shiftwatch/monitor"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(FLEET.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


def test_fleet_compose_file_is_valid_against_the_compose_spec(compose: dict) -> None:
    validator = jsonschema.Draft202012Validator(
        compose_schema(), format_checker=jsonschema.FormatChecker()
    )
    assert [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(compose)] == []


def test_redis_keeps_an_append_only_file_on_a_named_volume(compose: dict, services: dict) -> None:
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    assert redis["command"][:2] == ["sh", "-c"]
    command = redis_server_args(redis["command"][2])
    assert command[:2] == ["redis-server", "-"]  # configuration (the password) on stdin
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    (volume,) = redis["volumes"]
    name, path = volume.split(":")
    assert path == "/data" and name in compose["volumes"]  # the image's working dir
    check = " ".join(redis["healthcheck"]["test"])
    assert "redis-cli ping" in check and "PONG" in check  # redis-cli exits 0 on errors
    for name in ("service", "monitor"):
        assert services[name]["depends_on"]["redis"] == {"condition": "service_healthy"}, name


def test_service_replicas_can_be_scaled(services: dict) -> None:
    service = services["service"]
    # a container name or a host port would exist once: `--scale service=3` would fail
    assert "container_name" not in service and "ports" not in service
    published = [p for spec in services.values() for p in spec.get("ports", [])]
    assert all(p.startswith("127.0.0.1:") for p in published), published
    assert len(published) == len(set(published))


def test_balancer_is_the_one_address_and_finds_every_ready_replica(services: dict) -> None:
    lb = services["lb"]
    assert lb["ports"] == ["127.0.0.1:3000:3000"]
    mount = "./haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"
    assert lb["volumes"] == [mount]
    config = HAPROXY.read_text()
    assert re.search(r"^\s*bind :3000$", config, re.M)
    # every replica: the compose service name, resolved by the engine's DNS again and again
    template = re.search(r"^\s*server-template \S+ (\d+) (\S+)$", config, re.M)
    assert template and template.group(2) == "service:3000" and int(template.group(1)) >= 3
    assert re.search(r"^\s*parse-resolv-conf$", config, re.M)  # Docker's and podman's DNS
    assert re.search(r"^\s*default-server .*\bresolvers docker\b.*\bcheck\b", config, re.M)
    # ready replicas only, as the service's own health check (/readyz) says
    assert "option httpchk GET /readyz" in config
    assert "/readyz" in " ".join(services["service"]["healthcheck"]["test"])
    monitor_uri = re.search(r"^\s*monitor-uri (\S+)$", config, re.M).group(1)
    assert f"http://127.0.0.1:3000{monitor_uri}" in lb["healthcheck"]["test"]
    assert lb["depends_on"]["service"] == {"condition": "service_healthy"}


def test_service_and_monitor_read_the_same_transport_settings(
    services: dict, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    service, monitor = services["service"]["environment"], services["monitor"]["environment"]
    for name in ("SHIFTWATCH_EVENT_TRANSPORT", "SHIFTWATCH_REDIS_URL"):
        assert service[name] == monitor[name], name
    assert set(service) - {"BENTOML_HOME"} <= setting_names(ServiceSettings, "SHIFTWATCH_")
    assert set(monitor) - {"BENTOML_HOME"} <= setting_names(
        MonitorSettings, "SHIFTWATCH_MONITOR_"
    ) | setting_names(ServiceSettings, "SHIFTWATCH_")
    service_settings, _ = settings_in(with_secret_files(service, tmp_path), monkeypatch)
    _, monitor_settings = settings_in(with_secret_files(monitor, tmp_path), monkeypatch)
    assert service_settings.event_transport == monitor_settings.event_transport == "redis"
    assert service_settings.redis_url == monitor_settings.redis_url
    assert service_settings.redis_stream_prefix == monitor_settings.redis_stream_prefix
    url = urlsplit(monitor_settings.redis_url)
    assert (url.hostname, url.port) == ("redis", 6379)  # the compose service
    # with the password of the secret Redis requires
    assert url.password == secret_value("redis_password")


def test_redis_requires_the_password_from_its_secret_file(compose: dict, services: dict) -> None:
    """Redis shares its network with the balancer, Prometheus and Grafana: it requires a
    password, read from the secret file at start and handed over on stdin (never argv); the
    service, the monitor and the health check read the same file."""
    assert compose["secrets"]["redis_password"] == {
        "file": "${SHIFTWATCH_SECRETS_DIR:-./secrets}/redis_password"
    }
    redis = services["redis"]
    assert redis["secrets"] == ["redis_password"]
    script = redis["command"][2]
    assert "requirepass $$(cat /run/secrets/redis_password)" in script.splitlines()
    check = " ".join(redis["healthcheck"]["test"])
    assert 'REDISCLI_AUTH="$$(cat /run/secrets/redis_password)"' in check
    for name in ("service", "monitor"):
        assert "redis_password" in services[name]["secrets"], name
        environment = services[name]["environment"]
        assert environment["SHIFTWATCH_REDIS_PASSWORD_FILE"] == "/run/secrets/redis_password"
        assert urlsplit(environment["SHIFTWATCH_REDIS_URL"]).password is None, name


def test_one_monitor_keeps_its_state_on_a_named_volume(compose: dict, services: dict) -> None:
    monitor = services["monitor"]
    assert "deploy" not in monitor or monitor["deploy"].get("replicas", 1) == 1
    state = monitor["environment"]["SHIFTWATCH_MONITOR_STATE_PATH"]
    assert state.rsplit("/", 1)[0] == STATE_DIR
    volumes = dict(v.split(":") for v in monitor["volumes"])
    assert {path: name for name, path in volumes.items()}[STATE_DIR] in compose["volumes"]
    # no init container: the image's folder is the Bento user's (bento.Dockerfile.j2), and
    # podman's restart policy skips a container whose dependency has exited
    assert "volume-init" not in services and set(monitor["depends_on"]) == {"redis"}
    assert monitor["environment"]["SHIFTWATCH_MONITOR_HOST"] == "0.0.0.0"


def test_security_posture(services: dict) -> None:
    for name, spec in services.items():
        if name in ("prometheus", "grafana"):
            continue
        assert spec["read_only"] is True, name
        assert "privileged" not in spec, name
    for name in ("service", "monitor"):
        environment = services[name]["environment"]
        # under /tmp, the one tmpfs podman recreates writable when the container restarts
        assert (
            environment["BENTOML_HOME"].startswith("/tmp/") and "/tmp" in services[name]["tmpfs"]
        ), name
        assert "/tmp" in services[name]["tmpfs"], name
    for name in ("redis", "lb"):
        assert services[name]["cap_drop"] == ["ALL"], name
        assert services[name]["security_opt"] == ["no-new-privileges:true"], name
    assert services["redis"]["user"] == "999:1000"  # the image's redis user, not root


def test_shiftwatch_containers_are_the_single_machine_ones(services: dict) -> None:
    single = yaml.safe_load(SINGLE.read_text())["services"]
    for name in ("service", "monitor"):
        for field in ("image", "healthcheck", "read_only", "tmpfs"):
            assert services[name][field] == single[name][field], (name, field)
    assert services["monitor"]["ports"] == single["monitor"]["ports"]
    assert not {"command", "entrypoint", "working_dir"} & set(services["monitor"])  # the image's
    assert services["service"]["stop_grace_period"] == single["service"]["stop_grace_period"]
    assert services["grafana"] == single["grafana"]
    prometheus = {k: v for k, v in services["prometheus"].items() if k != "command"}
    assert prometheus == {k: v for k, v in single["prometheus"].items() if k != "command"}


def test_prometheus_scrapes_every_replica_and_the_monitor(services: dict) -> None:
    command = services["prometheus"]["command"]
    assert "--config.file=/etc/prometheus/prometheus.fleet.yml" in command
    assert "./prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    config = yaml.safe_load(PROMETHEUS.read_text())
    single = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    # the job names dashboards and alerts use
    assert set(jobs) == {job["job_name"] for job in single["scrape_configs"]}
    assert config["rule_files"] == single["rule_files"] == ["alerts.yml"]
    (discovery,) = jobs["shiftwatch-service"]["dns_sd_configs"]
    assert "static_configs" not in jobs["shiftwatch-service"]
    # one A record per replica of the compose service, on the port the service listens on
    assert discovery["names"] == ["service"] and discovery["type"] == "A"
    assert f":{discovery['port']}/readyz" in " ".join(services["service"]["healthcheck"]["test"])
    port = services["monitor"]["environment"]["SHIFTWATCH_MONITOR_PORT"]
    assert jobs["shiftwatch-monitor"]["static_configs"] == [{"targets": [f"monitor:{port}"]}]
