"""The images as built and run: sizes, build time, cold start, and /predict p50 in the container
against the same Bento served outside it (docs/benchmarks.md, section `bench_images`).

    python -m benchmarks.bench_images [--engine podman] [--base-image shiftwatch-base:bookworm]
        [--no-build]

The build is `deploy/images/build-images.sh` with every layer rebuilt (NO_CACHE=1). Cold start:
`run` of each image as docker-compose.yml runs it (read-only root, /tmp tmpfs) until /readyz
(service) or /healthz (monitor) answers 200; `bentoml serve` of the same Bento on the host
beside it. p50: one client alternating short blocks of requests between the container (its
port published on loopback) and the host server, so a container regression shows as a ratio
measured in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks.live_service import Request, Server, alternate
from benchmarks.machine import CpuSnapshot, machine_summary, other_load_cores
from benchmarks.render import images
from benchmarks.render.markdown import write_section
from benchmarks.results import ImagesRun
from harness import free_port, wait_until
from orchestration.replay.stack import LOOPBACK_FEEDBACK

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
BODY = b'{"instances": [{"text": "the quick brown fox jumps over the lazy dog again and again"}]}'
HOME = "/tmp/bentoml"  # BENTOML_HOME in the compose files
NETWORK = "shiftwatch-bench"  # its own bridge, as a compose project has


def engine(name: str, *args: str, timeout: float = 900) -> str:
    result = subprocess.run(
        [name, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{name} {' '.join(args)}: {result.stderr[-2000:]}")
    return result.stdout


def image_mb(name: str, image: str) -> float:
    return int(engine(name, "image", "inspect", image, "--format", "{{.Size}}")) / 1e6


def build_seconds(name: str, serving: str, monitor: str, base: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["deploy/images/build-images.sh", name, serving, monitor, base],
        cwd=ROOT,
        env={
            **os.environ,
            "NO_CACHE": "1",
            "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        },
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def wait_ok(url: str, timeout: float = 180) -> None:
    wait_until(
        lambda: httpx.get(url, timeout=2).status_code == 200,
        timeout,
        f"{url} to answer 200",
        every=0.05,
        tolerate=(httpx.HTTPError,),
    )


def run_container(name: str, image: str, port: int, container_port: int) -> str:
    """As docker-compose.yml runs it: read-only root, /tmp a tmpfs, the data folder writable."""
    return engine(
        name, "run", "-d", "--rm", "--network", NETWORK, "--read-only", "--tmpfs", "/tmp",
        "--tmpfs", "/var/lib/shiftwatch:mode=1777",
        "-e", f"BENTOML_HOME={HOME}", "-e", "SHIFTWATCH_FEEDBACK_OPEN=true",  # published on loopback
        "-p", f"127.0.0.1:{port}:{container_port}", image,
    ).strip()  # fmt: skip


def cold_start(name: str, image: str, container_port: int, path: str, trials: int) -> list[float]:
    seconds = []
    for _ in range(trials):
        port = free_port()
        started = time.perf_counter()
        container = run_container(name, image, port, container_port)
        try:
            wait_ok(f"http://127.0.0.1:{port}{path}")
            seconds.append(time.perf_counter() - started)
        finally:
            engine(name, "rm", "-f", "-t", "0", container)
    return seconds


def host_server(bento: str, work: Path) -> Server:
    """`bentoml serve` of the Bento the image was built from, on the host."""
    env = {**LOOPBACK_FEEDBACK, "SHIFTWATCH_EVENT_LOG_DIR": str(work / "events")}
    home = work / "bentoml_home"
    home.mkdir(parents=True)
    (home / "models").symlink_to(Path(os.environ["BENTOML_HOME"]) / "models")
    (home / "bentos").symlink_to(Path(os.environ["BENTOML_HOME"]) / "bentos")
    return Server._spawn(
        "host", ["bentoml", "serve", bento], {**env, "BENTOML_HOME": str(home)}, work
    )


def latest_bento() -> str:
    out = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "bentoml"), "list", "shiftwatch", "-o", "json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return max(json.loads(out), key=lambda b: b["creation_time"])["tag"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", default="podman")
    parser.add_argument("--image", default="shiftwatch:latest")
    parser.add_argument("--monitor-image", default="shiftwatch-monitor:latest")
    parser.add_argument("--base-image", default="", help="as `make image BASE_IMAGE=`")
    parser.add_argument("--no-build", action="store_true", help="measure the images as they are")
    parser.add_argument("--trials", type=int, default=3, help="cold starts per image")
    parser.add_argument("--cycles", type=int, default=40, help="alternation cycles (20 req each)")
    args = parser.parse_args()
    name = args.engine
    # The machine's other load, sampled before anything starts: during the run the engine,
    # the builds and the containers measured are other processes themselves.
    load_start = CpuSnapshot.now()
    time.sleep(3)
    load = other_load_cores(load_start, CpuSnapshot.now())

    build = None
    if not args.no_build:
        print("building both images, every layer ...", flush=True)
        build = build_seconds(name, args.image, args.monitor_image, args.base_image)
    sizes = {image: image_mb(name, image) for image in (args.image, args.monitor_image)}
    if args.base_image:
        sizes[args.base_image] = image_mb(name, args.base_image)

    if engine(name, "network", "ls", "--format", "{{.Name}}").split().count(NETWORK) == 0:
        engine(name, "network", "create", NETWORK)
    print("cold starts ...", flush=True)
    service_start = cold_start(name, args.image, 3000, "/readyz", args.trials)
    monitor_start = cold_start(name, args.monitor_image, 3002, "/healthz", args.trials)

    print("p50 in the container vs on the host ...", flush=True)
    bento = latest_bento()
    with tempfile.TemporaryDirectory(prefix="bench-images-") as scratch:
        work = Path(scratch)
        host_started = time.perf_counter()
        host = host_server(bento, work)
        host.wait_ready(time.monotonic() + 180)
        host_start = time.perf_counter() - host_started
        port = free_port()
        container = run_container(name, args.image, port, 3000)
        try:
            wait_ok(f"http://127.0.0.1:{port}/readyz")
            request = Request("POST", "/predict", BODY)
            result = alternate([port, host.port], request, block=20, cycles=args.cycles)
        finally:
            engine(name, "rm", "-f", "-t", "0", container)
            host.stop()
    engine(name, "network", "rm", "-f", NETWORK)
    p50 = [float(np.median(result.latencies_ms(k))) for k in (0, 1)]
    failures = [sum(v for k, v in o.items() if k != "200") for o in result.outcomes]

    run = ImagesRun(
        machine=machine_summary(),
        other_load_cores=load,
        engine=name,
        base_image=args.base_image,
        serving_image=args.image,
        monitor_image=args.monitor_image,
        sizes_mb=sizes,
        build_s=build,
        trials=args.trials,
        service_start_s=service_start,
        monitor_start_s=monitor_start,
        host_start_s=host_start,
        cycles=args.cycles,
        p50_ms=(p50[0], p50[1]),
        failures=(failures[0], failures[1]),
    )
    section = images.render(run)
    write_section(DOCS, "bench_images", section)
    print(section)


if __name__ == "__main__":
    main()
