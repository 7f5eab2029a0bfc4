"""The pod of deploy/k8s/deployment.yaml, run from the Bento's container build context.

No container engine runs where the tests do, so this is the closest check: `bentoml build`,
then the exact build context `bentoml containerize` hands to the engine (the Bento plus its
models/), and its Dockerfile. The Dockerfile must have the working dir, user and entrypoint
the manifests assume; then both containers' commands run as the manifest states them, with
the manifest's environment (its paths moved under a temporary folder): the service as the
image's entrypoint runs it (`bentoml serve $BENTO_PATH`), the monitor through its entrypoint
override, from the Bento's src/, reading references from the Bento's models/.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.deploy.tools import DEPLOY, wait_healthy
from tests.servers import ROOT, TINY_LIMITS, TINY_NAMES, free_port, stop_server

pytestmark = pytest.mark.slow


def pod_containers() -> dict[str, dict]:
    deployment = yaml.safe_load((DEPLOY / "k8s" / "deployment.yaml").read_text())
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def local_env(container: dict, moved: dict[str, Path]) -> dict[str, str]:
    """The container's environment with its volume paths moved to local folders."""
    env = {}
    for item in container["env"]:
        value = item["value"]
        for prefix, local in moved.items():
            if value.startswith(prefix):
                value = str(local) + value.removeprefix(prefix)
        env[item["name"]] = value
    return env


def image_env(context: Path) -> dict[str, str]:
    """The ENV of the image: the Bento's envs (bentofile.yaml's and the service's)."""
    manifest = yaml.safe_load((context / "bento.yaml").read_text())
    return {e["name"]: str(e["value"]) for e in manifest["envs"]}


def build_bento() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "--output", "tag"],
        cwd=ROOT,
        env={**os.environ, **TINY_LIMITS},  # pack the tiny models, by their names
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1].removeprefix("__tag__:")


def test_pod_commands_run_from_the_bento_build_context(tiny_store: dict, tmp_path: Path) -> None:
    import bentoml
    from bentoml._internal.container import construct_containerfile  # what containerize uses

    bento = bentoml.bentos.get(build_bento())
    containers = pod_containers()
    service, monitor = containers["service"], containers["monitor"]
    with construct_containerfile(bento, enable_buildkit=False) as (context, dockerfile):
        context = Path(context)
        docker = Path(dockerfile).read_text()
        bento_path = re.search(r"^ARG BENTO_PATH=(\S+)$", docker, re.M).group(1)
        uid = re.search(r"^ARG BENTO_USER_UID=(\d+)$", docker, re.M).group(1)
        assert "WORKDIR $BENTO_PATH" in docker
        assert f'ENTRYPOINT [ "{bento_path}/env/docker/entrypoint.sh" ]' in docker
        assert not re.search(r"^CMD", docker, re.M)  # no arguments: the entrypoint serves
        assert (
            'set -- bentoml serve "$@" "$BENTO_PATH"'
            in (context / "env/docker/entrypoint.sh").read_text()
        )
        pod = yaml.safe_load((DEPLOY / "k8s" / "deployment.yaml").read_text())
        assert pod["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid)
        compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
        assert f"{uid}:{uid}" in compose["services"]["volume-init"]["entrypoint"]
        assert compose["services"]["monitor"]["working_dir"] == f"{bento_path}/src"
        assert monitor["workingDir"] == f"{bento_path}/src"
        assert (context / "src" / "shiftwatch" / "__main__.py").is_file()
        for name in TINY_NAMES.values():
            assert (context / "models" / name / "latest").is_file()

        moved = {"/var/lib/shiftwatch": tmp_path / "shiftwatch"}
        service_home, monitor_home = tmp_path / "service-home", tmp_path / "monitor-home"
        monitor_home.mkdir()  # an emptyDir exists, empty, when the container starts
        service_port, monitor_port = free_port(), free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", str(context), "--port", str(service_port)],
            cwd=tmp_path,
            env={
                **os.environ,
                **image_env(context),
                **TINY_LIMITS,  # the tiny models' limits, as in every server test
                **local_env(service, {**moved, "/var/lib/bentoml": service_home}),
            },
            stdout=(tmp_path / "service.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{service_port}"
            wait_healthy(f"{url}/readyz", process, tmp_path / "service.log")
            sidecar = subprocess.Popen(
                monitor["command"],  # the entrypoint override, as the manifest states it
                cwd=context / "src",  # workingDir
                env={
                    **os.environ,
                    **image_env(context),
                    "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                    "BENTO_PATH": str(context),  # set by the image
                    **local_env(monitor, {**moved, "/var/lib/bentoml": monitor_home}),
                    "SHIFTWATCH_MONITOR_HOST": "127.0.0.1",
                    "SHIFTWATCH_MONITOR_PORT": str(monitor_port),
                },
                stdout=(tmp_path / "monitor.log").open("w"),
                stderr=subprocess.STDOUT,
            )
            try:
                monitor_url = f"http://127.0.0.1:{monitor_port}"
                wait_healthy(f"{monitor_url}/healthz", sidecar, tmp_path / "monitor.log")
                health = httpx.get(f"{monitor_url}/healthz").json()
                # The monitor follows the service's models (the image's environment).
                assert health["models"] == sorted(TINY_NAMES.values())
                assert (monitor_home / "models").resolve() == (context / "models").resolve()
                body = {"instances": [{"tokens": ["w1", "w2", "mark_a"], "request_id": "pod-1"}]}
                assert httpx.post(f"{url}/predict", json=body).status_code == 200
                deadline = time.monotonic() + 30
                while True:
                    counters = httpx.get(f"{monitor_url}/status").json()["counters"]
                    if counters.get("events_prediction") == 1 or time.monotonic() > deadline:
                        break
                    time.sleep(0.3)
                assert counters.get("events_prediction") == 1, counters
            finally:
                stop_server(sidecar)
        finally:
            stop_server(process)
    assert not any(service_home.joinpath("models").iterdir())  # models came from the Bento
