"""Service benchmark: HTTP /predict on real `bentoml serve` processes vs a bare onnxruntime
server and a bare session.run.

One run, one machine, loopback only. Six servers run side by side, each its own process
started and stopped here: the default deployment (adaptive batching, event log to file
segments, shadow models), the same with the event log on the `redis` transport (a local
redis-server started and stopped here), then each of batching, event log and shadows turned
off alone; and the anchor, benchmarks/bare_server.py (the same OnnxClassifier and model on a
bare Starlette/uvicorn app, no BentoML).
Every cell (configuration x concurrent clients) is split into interleaved rounds with
the configurations' order rotating, and the primary model's bare `session.run` is
timed in the same rounds as the one-client cells, so a change in machine load hits
every configuration alike. The one-client targets (what each event transport and the
shadows cost, a few percent of p50, less than the rounds' drift; the distance to the bare
server) are measured apart: the servers they compare alternated in blocks of a few
requests (`live_service.alternate`). The table goes to stdout and to this benchmark's section
of docs/benchmarks.md. Batching numbers and threads come from the caller's SHIFTWATCH_*
environment, e.g. `SHIFTWATCH_MAX_LATENCY_MS=1000 make bench-service`.

    python -m benchmarks.bench_service [--quick] [--requests 400] [--seq-len 32]
"""

from __future__ import annotations

import json
import math
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import bentoml
import httpx
import onnxruntime as ort
import typer
import uvicorn
from rich.console import Console

from benchmarks.bare_server import BUNDLE_ENV, VERSION_ENV
from benchmarks.live_service import (
    BATCH_SIZE,
    HOST,
    JSON,
    READY_TIMEOUT_S,
    Alternation,
    Cell,
    Request,
    Server,
    alternate,
    drive,
    process_cpu_seconds,
    signals_deferred,
)
from benchmarks.machine import CpuSnapshot, Environment, other_load_cores
from benchmarks.render.markdown import write_section
from benchmarks.render.service import render
from benchmarks.results import (
    ALTERNATED,
    CLIENTS,
    CONFIGS,
    DEFAULT_SHADOWS,
    NO_SHADOWS,
    REQUEST_SCALE,
    STREAM_PREFIX,
    LoadBudget,
    ServerConfig,
    ServiceRun,
)
from benchmarks.stage_budget import stage_timings
from benchmarks.timing import RepetitionBudget, Timing, time_calls
from harness import RedisServer
from shiftwatch.bundle import ModelBundle
from shiftwatch.data import load_dataset
from shiftwatch.encoding import pad_batch
from shiftwatch.inference import OnnxClassifier, open_session
from shiftwatch.model_store import read_stored_bundle
from shiftwatch.settings import ServiceSettings
from shiftwatch.transport.redis_streams import label_stream, prediction_stream
from shiftwatch.transport.segments import logged_events

ROOT = Path(__file__).resolve().parents[1]
SECTION = "bench_service"
LIVEZ = Request("GET", "/livez")  # BentoML's HTTP path (middleware, routing) without an API
console = Console(stderr=True)


# Full: 5 configurations x 3 levels x 12 s at most, then 3 x 60 x 16 transport requests:
# ~2.5 minutes with start-up on 2 cores.
FULL = LoadBudget(200, 400, 12.0, 3, RepetitionBudget(20, 20, 1000, 1.0), 15, 60)
QUICK = LoadBudget(30, 60, 2.4, 2, RepetitionBudget(5, 5, 200, 0.2), 10, 8)  # ~60 s smoke run


def stored_bundle(name: str) -> tuple[ModelBundle, str]:
    """The latest bundle of a model name in the model store (BENTOML_HOME), and its tag."""
    model = bentoml.models.get(f"{name}:latest")
    return read_stored_bundle(model), str(model.tag)


def request_sequence(seq_len: int) -> tuple[list[str], str, int]:
    """A fixed test-split sequence of `seq_len` tokens: tokens, domain, row in the split.

    The first row of exactly that length, else the first longer row cut to it.
    """
    test = load_dataset().split("test")
    tokens = test["text"].str.split()
    lengths = tokens.map(len)
    rows = list(test.index[lengths == seq_len]) or list(test.index[lengths > seq_len])
    if not rows:
        raise typer.BadParameter(f"no test sequence has {seq_len} tokens", param_hint="--seq-len")
    row = rows[0]
    return list(tokens[row])[:seq_len], str(test.at[row, "domain"]), int(row)


def bare_env(settings: ServiceSettings, bundle: ModelBundle, tag: str) -> dict[str, str]:
    """The bare server's model and threads: the primary's bundle, as the service's."""
    return {
        BUNDLE_ENV: str(bundle.path),
        VERSION_ENV: tag,
        "SHIFTWATCH_INTRA_OP_THREADS": str(settings.intra_op_threads),
        "SHIFTWATCH_INTER_OP_THREADS": str(settings.inter_op_threads),
        "SHIFTWATCH_PREFER_GPU": str(settings.prefer_gpu).lower(),
    }


def server_env(
    config: ServerConfig, settings: ServiceSettings, max_tokens: int, events: Path, redis_url: str
) -> dict[str, str]:
    """Every setting the numbers depend on, explicit, so no two servers differ by accident."""
    flag = {True: "true", False: "false"}
    return {
        "BENTOML_DO_NOT_TRACK": "true",
        "DO_NOT_TRACK": "1",
        "EVIDENTLY_DISABLE_TELEMETRY": "1",
        "ORT_DISABLE_TELEMETRY": "1",
        "SHIFTWATCH_PRIMARY_MODEL": settings.primary_model,
        "SHIFTWATCH_SHADOW_MODELS": ",".join(DEFAULT_SHADOWS) if config.shadows else "",
        "SHIFTWATCH_BATCHING": flag[config.batching],
        "SHIFTWATCH_EVENT_LOG_ENABLED": flag[config.event_log],
        "SHIFTWATCH_EVENT_TRANSPORT": config.transport,
        "SHIFTWATCH_EVENT_LOG_DIR": str(events),
        "SHIFTWATCH_REDIS_URL": redis_url,
        "SHIFTWATCH_REDIS_STREAM_PREFIX": STREAM_PREFIX,
        "SHIFTWATCH_REDIS_MAX_LEN": str(settings.redis_max_len),
        "SHIFTWATCH_MAX_TOKENS": str(max_tokens),
        "SHIFTWATCH_MAX_BATCH_SIZE": str(settings.max_batch_size),
        "SHIFTWATCH_MAX_LATENCY_MS": str(settings.max_latency_ms),
        "SHIFTWATCH_INFERENCE_BATCH": str(settings.inference_batch),
        "SHIFTWATCH_INTRA_OP_THREADS": str(settings.intra_op_threads),
        "SHIFTWATCH_INTER_OP_THREADS": str(settings.inter_op_threads),
        "SHIFTWATCH_PREFER_GPU": flag[settings.prefer_gpu],
    }


def warm_up(server: Server, body: bytes, primary: str, requests: int) -> None:
    """Check that an answer comes from the primary, then send untimed requests from 8 clients."""
    answer = httpx.post(
        f"{server.url}/predict", content=body, headers=JSON, timeout=30, trust_env=False
    )
    if answer.status_code != 200 or answer.json()[0].get("model") != primary:
        raise RuntimeError(f"server '{server.name}' answered {answer.status_code}: {answer.text}")
    drive(server.port, Request("POST", "/predict", body), 8, requests, 60.0)


def measure(
    servers: dict[str, Server], body: bytes, budget: LoadBudget, session_run: Callable[[], object]
) -> tuple[dict[tuple[str, int], Cell], Timing, Cell, Alternation]:
    """Every cell in interleaved rounds; in the one-client rounds also the bare session.run
    and GET /livez on the no-shadows server (BentoML's HTTP path without an API call); after
    them the event transports' servers alternated in short blocks, one client."""
    cells = {(c.name, clients): Cell() for c in CONFIGS for clients in CLIENTS}
    raw: list[float] = []
    livez, predict = Cell(), Request("POST", "/predict", body)
    for clients in CLIENTS:
        requests = math.ceil(budget.requests * REQUEST_SCALE[clients] / budget.rounds)
        seconds = budget.seconds / budget.rounds
        for r in range(budget.rounds):
            if clients == 1:
                raw += time_calls(session_run, budget.raw).samples_ms
                livez.measure(servers[NO_SHADOWS.name], LIVEZ, 1, requests, seconds)
            for config in CONFIGS[r % len(CONFIGS) :] + CONFIGS[: r % len(CONFIGS)]:
                cell = cells[config.name, clients]
                cell.measure(servers[config.name], predict, clients, requests, seconds)
            p50s = ", ".join(
                f"{c.name} {p[-1]:.2f}" if (p := cells[c.name, clients].round_p50_ms) else "-"
                for c in CONFIGS
            )
            console.print(f"{clients:>2} clients, round {r + 1}/{budget.rounds}: p50 ms {p50s}")
        if clients == 1:  # before any more clients: BentoML's batching adapts to the load
            transports = alternate_transports(servers, predict, budget)
    return cells, Timing(tuple(raw)), livez, transports


def alternate_transports(
    servers: dict[str, Server], predict: Request, budget: LoadBudget
) -> Alternation:
    """One client, the servers of the one-client targets alternated in blocks (`alternate`)."""
    ports = [servers[c.name].port for c in ALTERNATED]
    transports = alternate(ports, predict, budget.transport_block, budget.transport_cycles)
    p50s = ", ".join(
        f"{c.name} {Timing(tuple(ms)).median_ms:.2f}" if (ms := transports.latencies_ms(k)) else "-"
        for k, c in enumerate(ALTERNATED)
    )
    console.print(f" 1 client, alternated: p50 ms {p50s}")
    return transports


def other_load(start: CpuSnapshot, end: CpuSnapshot, servers_cpu_s: float) -> float | None:
    """Cores used on average by everything but this process and its servers."""
    others = other_load_cores(start, end)
    if others is None:
        return None
    return max(others - servers_cpu_s / (end.wall_s - start.wall_s), 0.0)


def serve_and_measure(
    work: Path,
    models: Path,
    anchor_env: dict[str, str],
    settings: ServiceSettings,
    max_tokens: int,
    body: bytes,
    budget: LoadBudget,
    session_run: Callable[[], object],
) -> tuple[
    dict[tuple[str, int], Cell], Timing, Cell, Alternation, dict[str, dict], dict, float | None
]:
    """Start redis-server and every configuration's server, measure, and stop them all
    whatever happens (the servers first, so the redis transport's queue is written).

    Args:
        work: a scratch folder for the servers' homes, logs and event logs, and Redis's data.
        models: the model store's folder, linked into each server's home.
        anchor_env: the bare server's environment (`bare_env`).
    """
    servers: dict[str, Server] = {}
    facts: dict[str, dict] = {c.name: {} for c in CONFIGS}
    redis_server = RedisServer(work / "redis")
    redis: dict = {"version": "?", "streams": {}, "cpu_s": math.nan, "measured_s": math.nan}
    try:
        with signals_deferred():
            redis_server.start()
        redis_pid = redis_server.process.pid
        for config in CONFIGS:
            folder = work / config.folder
            if config.bare:
                with signals_deferred():
                    servers[config.name] = Server.start_bare(config.name, anchor_env, folder)
                continue
            env = server_env(config, settings, max_tokens, folder / "events", redis_server.url)
            with signals_deferred():
                servers[config.name] = Server.start(config.name, env, folder, models)
        console.print(f"started {len(servers)} servers and redis-server on {HOST}; waiting")
        deadline = time.monotonic() + READY_TIMEOUT_S
        for server in servers.values():
            server.wait_ready(deadline)
            warm_up(server, body, settings.primary_name, budget.warmup_requests)
        started, redis_cpu = CpuSnapshot.now(), process_cpu_seconds(redis_pid)
        servers_cpu = sum(s.cpu_seconds() for s in servers.values())
        cells, raw, livez, transports = measure(servers, body, budget, session_run)
        servers_cpu = sum(s.cpu_seconds() for s in servers.values()) - servers_cpu
        redis["cpu_s"], ended = process_cpu_seconds(redis_pid) - redis_cpu, CpuSnapshot.now()
        redis["measured_s"] = ended.wall_s - started.wall_s
        load = other_load(started, ended, servers_cpu + redis["cpu_s"])
        for name, server in servers.items():
            facts[name]["served"] = server.metric(f"{BATCH_SIZE}_sum")
            facts[name]["write_errors"] = server.metric("shiftwatch_event_log_write_errors_total")
            facts[name]["shadows_skipped"] = server.metric("shiftwatch_shadow_skipped_total")
    finally:
        with signals_deferred():  # a second Ctrl-C must not leave a server running
            for name, server in servers.items():
                facts[name]["port_freed"] = server.stop()
                facts[name]["stray_killed"] = server.stray_killed
            try:
                if redis_server.process is not None and redis_server.process.poll() is None:
                    redis.update(redis_facts(redis_server, settings.primary_name))
            finally:
                redis_server.stop()
    for config in CONFIGS:
        if config.transport == "redis":
            facts[config.name]["events"] = sum(redis["streams"].values())  # XLEN
        else:
            facts[config.name]["events"] = len(logged_events(work / config.folder / "events"))
        facts[config.name]["log_errors"] = errors = servers[config.name].log_errors()
        if errors:
            console.print(f"[yellow]server '{config.name}' logged {errors.total()} errors[/]")
        if config.event_log and not facts[config.name]["events"]:
            console.print(f"[red]server '{config.name}' wrote no events[/]")
    return cells, raw, livez, transports, facts, redis, load


def redis_facts(server: RedisServer, primary: str) -> dict:
    """The redis transport's server after the servers stopped: version, each stream's length."""
    client = server.client()
    try:
        names = (prediction_stream(STREAM_PREFIX, primary), label_stream(STREAM_PREFIX))
        return {
            "version": client.info("server")["redis_version"],
            "streams": {name: int(client.xlen(name)) for name in names},
        }
    finally:
        client.close()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through `finally`, which stops the servers


def main(
    quick: Annotated[bool, typer.Option("--quick", help="~60 s smoke run: few requests.")] = False,
    requests: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Timed requests of a one-client cell (x3 at 8 clients, x6 at 32); default "
            "400, 60 with --quick. A cell also stops at its time limit.",
        ),
    ] = None,
    seq_len: Annotated[int, typer.Option(min=1, help="Tokens in the request's sequence.")] = 32,
    out: Annotated[Path, typer.Option(help="Report file.")] = ROOT / "docs" / "benchmarks.md",
) -> None:
    """Time HTTP /predict on five server configurations against session.run; write the report."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    wall_started = time.perf_counter()
    budget = QUICK if quick else FULL
    budget = replace(budget, requests=requests or budget.requests)
    settings = ServiceSettings()
    names = list(dict.fromkeys([settings.primary_name, *DEFAULT_SHADOWS]))
    bundles = {name: stored_bundle(name) for name in names}
    max_tokens = min(settings.max_tokens, *(b.meta.max_positions for b, _ in bundles.values()))
    if seq_len > max_tokens:
        raise typer.BadParameter(f"over the models' limit {max_tokens}", param_hint="--seq-len")
    tokens, domain, row = request_sequence(seq_len)
    body = json.dumps({"instances": [{"tokens": tokens, "domain": domain}]}).encode()
    primary = bundles[settings.primary_name][0]
    session = open_session(
        primary.model_path,
        settings.intra_op_threads,
        settings.inter_op_threads,
        settings.prefer_gpu,
    )
    classifier = OnnxClassifier(session, primary.meta.max_positions)
    ids, mask = pad_batch(primary.tokenizer.encode([" ".join(tokens)]).ids)
    console.print("timing each stage of the request path in this process")
    stage_settings = settings.model_copy(update={"shadow_models": list(DEFAULT_SHADOWS)})
    stages = stage_timings(bundles, stage_settings, body, budget.raw)
    with tempfile.TemporaryDirectory(prefix="bench_service_") as work:
        cells, raw, livez, transports, facts, redis, load = serve_and_measure(
            Path(work),
            primary.path.parents[1],  # <store>/models/<name>/<version> -> <store>/models
            bare_env(settings, primary, bundles[settings.primary_name][1]),
            settings,
            max_tokens,
            body,
            budget,
            lambda: classifier.run(ids, mask),
        )
    run = ServiceRun(
        command=" ".join(["python -m benchmarks.bench_service", *sys.argv[1:]]),
        quick=quick,
        budget=budget,
        settings=settings,
        max_tokens=max_tokens,
        model_tags={name: tag for name, (_, tag) in bundles.items()},
        provider=session.get_providers()[0],
        request=f"one instance of {len(tokens)} tokens (test split row {row}, domain {domain}), "
        f"{len(body)} bytes of JSON",
        raw=raw,
        livez=livez,
        cells=cells,
        transports=transports,
        servers=facts,
        redis=redis,
        other_load_cores=load,
        wall_s=time.perf_counter() - wall_started,
        stages=stages,
        environment=Environment.capture(
            bentoml=bentoml.__version__,
            onnxruntime=ort.__version__,
            httpx=httpx.__version__,
            uvicorn=uvicorn.__version__,
        ),
    )
    markdown = render(run)
    print(markdown)
    write_section(out, SECTION, markdown)
    console.print(f"wrote section '{SECTION}' of {out}")


if __name__ == "__main__":
    typer.run(main)
