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
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks.live_service import Request, Server, alternate, free_port
from benchmarks.report import (
    CpuSnapshot,
    machine_summary,
    markdown_table,
    other_load_cores,
    verdict,
    write_section,
)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
SERVING_TARGET_MB = 700  # DESIGN.md: serving image <= 700 MB
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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(url)


def run_container(name: str, image: str, port: int, container_port: int) -> str:
    """As docker-compose.yml runs it: read-only root, /tmp a tmpfs, the data folder writable."""
    return engine(
        name, "run", "-d", "--rm", "--network", NETWORK, "--read-only", "--tmpfs", "/tmp",
        "--tmpfs", "/var/lib/shiftwatch:mode=1777",
        "-e", f"BENTOML_HOME={HOME}",
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
    env = {"SHIFTWATCH_EVENT_LOG_DIR": str(work / "events")}
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

    serving_mb, monitor_mb = sizes[args.image], sizes[args.monitor_image]
    lines = [
        "## Images: size, build, cold start, container overhead",
        "",
        f"Generated by `make bench-images` ({name}; base "
        f"`{args.base_image or 'python:3.11-slim'}`). Machine: {machine_summary()}; other "
        f"processes' load in the 3 s before the run: {load:.2f} cores.",
        "",
        markdown_table(
            ["image", "size (MB)"], [[f"`{i}`", f"{mb:.0f}"] for i, mb in sizes.items()]
        ),
        "",
        f"- Serving image ≤ {SERVING_TARGET_MB} MB: "
        f"{verdict(serving_mb, SERVING_TARGET_MB, True, ' MB')}.",
        f"- The monitor in an image of its own: the analytics stack it adds (Evidently, pandas, "
        f"pyarrow, scipy) is {monitor_mb - serving_mb:.0f} MB the service never imports; one "
        f"image for both would be {monitor_mb:.0f} MB, and every service start would carry it.",
        "- Build of both images, every layer rebuilt (wheels downloaded): "
        + (f"{build:.0f} s." if build is not None else "not measured (`--no-build`)."),
        f"- Cold start, `run` to first 200 (median of {args.trials}): service "
        f"{statistics.median(service_start):.1f} s (/readyz), monitor "
        f"{statistics.median(monitor_start):.1f} s (/healthz); the same Bento served on the "
        f"host: {host_start:.1f} s.",
        f"- `/predict` p50, one client, {args.cycles} cycles of 20 requests alternated: "
        f"container {p50[0]:.2f} ms, host {p50[1]:.2f} ms, ratio {p50[0] / p50[1]:.2f} "
        f"(failed requests: container {failures[0]}, host {failures[1]}). The container's "
        "requests cross the engine's port forwarding.",
    ]
    write_section(DOCS, "bench_images", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
