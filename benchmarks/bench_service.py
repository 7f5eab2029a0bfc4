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
import platform
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
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
from benchmarks.report import (
    BUSY_CORES,
    CpuSnapshot,
    machine_summary,
    markdown_table,
    other_load_cores,
    verdict,
    write_section,
)
from benchmarks.timing import RepetitionBudget, Timing, time_calls
from benchmarks.transport_cost import TransportCost, alternated_cost, rounds_cost
from orchestration.replay.redis_server import RedisServer
from shiftwatch.bundle import ModelBundle, read_bundle
from shiftwatch.data import load_dataset
from shiftwatch.encoding import pad_batch
from shiftwatch.inference import OnnxClassifier, open_session
from shiftwatch.settings import ServiceSettings
from shiftwatch.transport.redis_streams import label_stream, prediction_stream
from shiftwatch.transport.segments import logged_events

ROOT = Path(__file__).resolve().parents[1]
SECTION = "bench_service"
CLIENTS = (1, 8, 32)
REQUEST_SCALE = {1: 1, 8: 3, 32: 6}  # timed requests per cell, in multiples of --requests
# DESIGN.md's service targets.
BARE_MS = 1.0  # p50 without shadows - the bare server's p50, one client
BARE_THROUGHPUT = 0.8  # throughput without shadows / the bare server's, 32 clients
SHADOWS_RATIO = 1.15  # p50 with the default shadows / p50 without, one client
BATCHING_SPEEDUP = 1.2  # batched / unbatched throughput, 32 clients
EVENT_LOG_PCT = 5.0  # % either event transport may add to p50, one client
STREAM_PREFIX = "bench"  # the redis transport's streams: bench:predictions:<primary>
LIVEZ = Request("GET", "/livez")  # BentoML's HTTP path (middleware, routing) without an API
console = Console(stderr=True)


@dataclass(frozen=True)
class LoadBudget:
    """How much load each cell gets: bounded by a request count and by time."""

    warmup_requests: int  # per server, untimed, from 8 clients, before any cell
    requests: int  # timed requests of a one-client cell (x REQUEST_SCALE with more clients)
    seconds: float  # no new request starts in a cell once this much of its time is spent
    rounds: int  # each cell's requests and time are split over this many interleaved rounds
    raw: RepetitionBudget  # bare session.run, per round
    # The event transports' cost, one client: blocks of this many timed requests to each of
    # the three servers in turn (each block after one untimed request), this many cycles.
    transport_block: int
    transport_cycles: int


# Full: 5 configurations x 3 levels x 12 s at most, then 3 x 60 x 16 transport requests:
# ~2.5 minutes with start-up on 2 cores.
FULL = LoadBudget(200, 400, 12.0, 3, RepetitionBudget(20, 20, 1000, 1.0), 15, 60)
QUICK = LoadBudget(30, 60, 2.4, 2, RepetitionBudget(5, 5, 200, 0.2), 10, 8)  # ~60 s smoke run


@dataclass(frozen=True)
class ServerConfig:
    """One server configuration: the default deployment or one feature of it off."""

    name: str
    batching: bool
    event_log: bool
    shadows: bool
    transport: str = "file"  # SHIFTWATCH_EVENT_TRANSPORT, when the event log is on
    bare: bool = False  # benchmarks/bare_server.py instead of the service

    @property
    def folder(self) -> str:
        return self.name.replace(" ", "_")

    @property
    def event_log_label(self) -> str:
        return self.transport if self.event_log else "off"


DEFAULT = ServerConfig("default", batching=True, event_log=True, shadows=True)
REDIS = replace(DEFAULT, name="redis transport", transport="redis")
UNBATCHED = ServerConfig("batching off", batching=False, event_log=True, shadows=True)
NO_EVENT_LOG = ServerConfig("event log off", batching=True, event_log=False, shadows=True)
NO_SHADOWS = ServerConfig("no shadows", batching=True, event_log=True, shadows=False)
BARE = ServerConfig("bare server", batching=False, event_log=False, shadows=False, bare=True)
CONFIGS = (DEFAULT, REDIS, UNBATCHED, NO_EVENT_LOG, NO_SHADOWS, BARE)
TRANSPORTS = (DEFAULT, REDIS)  # each measured against NO_EVENT_LOG
TRANSPORT_SERVERS = (*TRANSPORTS, NO_EVENT_LOG)
ALTERNATED = (*TRANSPORT_SERVERS, NO_SHADOWS, BARE)  # in `alternate`'s order
ANCHOR = (BARE, NO_SHADOWS, DEFAULT)  # the anchor table's rows
DEFAULT_SHADOWS: list[str] = ServiceSettings.model_fields["shadow_models"].default_factory()


def stored_bundle(name: str) -> tuple[ModelBundle, str]:
    """The latest bundle of a model name in the model store (BENTOML_HOME), and its tag."""
    model = bentoml.models.get(f"{name}:latest")
    return read_bundle(model.path), str(model.tag)


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


@dataclass(frozen=True)
class Run:
    """Everything one benchmark run measured, ready to be written up."""

    command: str  # how this run was started, flags included
    quick: bool
    budget: LoadBudget
    settings: ServiceSettings  # the caller's environment: batching numbers and threads
    max_tokens: int
    model_tags: dict[str, str]  # variant -> store tag, the primary first
    provider: str  # onnxruntime execution provider of the bare session
    request: str  # what one request holds
    raw: Timing  # bare session.run of the primary, batch 1
    livez: Cell  # GET /livez, one client, on the no-shadows server
    cells: dict[tuple[str, int], Cell]
    transports: Alternation  # ALTERNATED's servers in blocks, one client
    servers: dict[str, dict]  # configuration -> what its server did (see `server_rows`)
    redis: dict  # the redis transport's server: version, streams' lengths, CPU while measured
    other_load_cores: float | None  # used by all but this process, its servers and redis-server
    wall_s: float


def anchor_target_rows(run: Run) -> list[list[str]]:
    """The targets against the bare server and what shadows cost at one client (alternated
    blocks), and the throughput against the bare server at 32 clients (the grid's cells)."""
    rows = []
    target = f"p50 without shadows <= bare server p50 + {BARE_MS:g} ms (1 client)"
    if cost := alternated_pair(run, NO_SHADOWS, BARE):
        gap = cost.p50_on_ms - cost.p50_off_ms
        measured = (
            f"{gap:+.2f} ms ({cost.p50_on_ms:.2f} vs {cost.p50_off_ms:.2f} ms, ratio "
            f"{cost.ratio:.2f}x, {cost.noise}; alternated blocks)"
        )
        rows.append([target, measured, verdict(gap, BARE_MS, True, " ms")])
    else:
        rows.append([target, "no answers", "-"])
    target = f"throughput without shadows >= {BARE_THROUGHPUT:g}x the bare server's (32 clients)"
    service, bare = (run.cells[c.name, 32] for c in (NO_SHADOWS, BARE))
    if bare.throughput:
        ratio = service.throughput / bare.throughput
        measured = (
            f"{ratio:.2f}x ({service.throughput:,.0f} vs {bare.throughput:,.0f} req/s; "
            f"p50 {fmt_p50(service)} vs {fmt_p50(bare)} ms)"
        )
        rows.append([target, measured, verdict(ratio, BARE_THROUGHPUT, False, "x")])
    else:
        rows.append([target, "no bare-server answers", "-"])
    target = f"p50 with the default shadows <= {SHADOWS_RATIO:g}x p50 without (1 client)"
    if cost := alternated_pair(run, DEFAULT, NO_SHADOWS):
        measured = (
            f"{cost.ratio:.3f}x ({cost.added_pct:+.1f}%: {cost.p50_on_ms:.2f} vs "
            f"{cost.p50_off_ms:.2f} ms; {cost.noise}; alternated blocks)"
        )
        rows.append([target, measured, verdict(cost.ratio, SHADOWS_RATIO, True, "x")])
    else:
        rows.append([target, "no answers", "-"])
    return rows


def fmt_p50(cell: Cell) -> str:
    return f"{cell.timing.median_ms:.2f}" if cell.timing else "-"


def anchor_rows(run: Run) -> list[list[object]]:
    """The bare server, the service without shadows and with the default ones, at 1 and
    32 clients (the grid's cells; at 1 client also the alternated blocks' p50)."""
    rows = []
    for clients in (1, 32):
        for config in ANCHOR:
            cell, t = run.cells[config.name, clients], run.cells[config.name, clients].timing
            alternated = "-"
            if clients == 1 and (ms := run.transports.latencies_ms(ALTERNATED.index(config))):
                alternated = f"{Timing(tuple(ms)).median_ms:.3f}"
            rows.append(
                [config.name, clients]
                + ([f"{t.median_ms:.3f}", f"{t.p99_ms:.3f}"] if t else ["-", "-"])
                + [f"{cell.throughput:,.0f}", alternated, cell.failures]
            )
    return rows


def target_rows(run: Run) -> list[list[str]]:
    """DESIGN.md's service targets and what shadows cost: [target, measured, status]."""
    p50 = {key: cell.timing.median_ms for key, cell in run.cells.items() if cell.timing}
    raw = run.raw.median_ms
    rows = anchor_target_rows(run)
    for config in (NO_SHADOWS, DEFAULT):
        target = f"what HTTP adds to session.run (1 client, {config.name})"
        if (http := p50.get((config.name, 1))) is None:
            rows.append([target, "no answers", "-"])
            continue
        measured = f"p50 {http - raw:.2f} ms ({http:.2f} - {raw:.3f}; the grid's rounds)"
        rows.append([target, measured, "no target"])
    if run.livez.timing and (http := p50.get((NO_SHADOWS.name, 1))):
        floor = run.livez.timing.median_ms
        measured = (
            f"GET /livez p50 {floor:.2f} ms: BentoML's HTTP path with no API call (uvicorn, "
            f"its ASGI middleware: OpenTelemetry, metrics, access log, concurrency limit); "
            f"/predict adds {http - floor - raw:.2f} ms beyond it and session.run (JSON, "
            f"validation, batching dispatch, thread hop, response)"
        )
        rows.append(["what bounds the overhead (1 client, no shadows)", measured, "no target"])
    batched, unbatched = (run.cells[c.name, 32] for c in (DEFAULT, UNBATCHED))
    target = f"batching >= {BATCHING_SPEEDUP:g}x unbatched throughput (32 clients)"
    if unbatched.throughput:
        speedup = batched.throughput / unbatched.throughput
        measured = f"{speedup:.2f}x ({batched.throughput:,.0f} vs {unbatched.throughput:,.0f} req/s"
        for cell in (batched, unbatched):
            if cell.failures:
                total = cell.failures + len(cell.latencies_ms)
                measured += f"; {cell.failures} of {total} not answered 200"
        rows.append([target, measured + ")", verdict(speedup, BATCHING_SPEEDUP, False, "x")])
    else:
        rows.append([target, "no unbatched answers", "-"])
    for config in TRANSPORTS:
        target = f"{config.transport} transport adds <= {EVENT_LOG_PCT:g}% to p50 (1 client)"
        if (cost := transport_cost(run, config, 1)) is None:
            rows.append([target, "no answers", "-"])
            continue
        measured = (
            f"{cost.ratio:.3f}x ({cost.added_pct:+.1f}%: {cost.p50_on_ms:.2f} vs "
            f"{cost.p50_off_ms:.2f} ms, event log off; {cost.noise}; alternated blocks)"
        )
        rows.append([target, measured, verdict(cost.added_pct, EVENT_LOG_PCT, True, " points")])
    target = "what shadows cost (32 clients)"
    if (on := p50.get((DEFAULT.name, 32))) and (off := p50.get((NO_SHADOWS.name, 32))):
        kept = run.cells[DEFAULT.name, 32].throughput / run.cells[NO_SHADOWS.name, 32].throughput
        measured = (
            f"p50 {on - off:+.2f} ms ({100 * (on / off - 1):+.0f}%: {on:.2f} vs "
            f"{off:.2f} ms); throughput {kept:.2f}x"
        )
        rows.append([target, measured, "no target"])
    else:
        rows.append([target, "no answers", "-"])
    return rows


def alternated_pair(run: Run, on: ServerConfig, off: ServerConfig) -> TransportCost | None:
    """`on` against `off` from the one-client alternated blocks."""
    blocks = run.transports.blocks_ms
    return alternated_cost(blocks[ALTERNATED.index(on)], blocks[ALTERNATED.index(off)])


def transport_cost(run: Run, config: ServerConfig, clients: int) -> TransportCost | None:
    """`config`'s event transport against the event log off: one client from the alternated
    blocks (the target's measure), more from the grid's cells."""
    if clients == 1:
        return alternated_pair(run, config, NO_EVENT_LOG)
    return rounds_cost(run.cells[config.name, clients], run.cells[NO_EVENT_LOG.name, clients])


def transport_rows(run: Run) -> list[list[object]]:
    """Each event transport next to the event log off: p50 and what the transport costs.
    One client: the alternated blocks (the target's measure); 32 clients: the grid's cells."""
    b = run.budget
    rows = []
    for k, config in enumerate(TRANSPORT_SERVERS):
        ms = run.transports.latencies_ms(k)
        t = Timing(tuple(ms)) if ms else None
        failed = sum(n for o, n in run.transports.outcomes[k].items() if o != "200")
        cost = transport_cost(run, config, 1) if config.event_log else None
        rows.append(
            [
                config.name,
                config.event_log_label,
                1,
                f"alternated blocks, {b.transport_cycles} x {b.transport_block}",
                len(ms),
                failed,
            ]
            + ([f"{t.median_ms:.3f}", f"{t.p99_ms:.3f}"] if t else ["-", "-"])
            + (
                [
                    f"{cost.ratio:.3f}x ({cost.added_pct:+.1f}%)",
                    cost.noise,
                    verdict(cost.added_pct, EVENT_LOG_PCT, True, " points"),
                ]
                if cost
                else ["-"] * 3
            )
        )
    for config in TRANSPORT_SERVERS:
        cell = run.cells[config.name, 32]
        t = cell.timing
        cost = transport_cost(run, config, 32) if config.event_log else None
        rows.append(
            [
                config.name,
                config.event_log_label,
                32,
                f"the grid's {b.rounds} rounds",
                len(cell.latencies_ms),
                cell.failures,
            ]
            + ([f"{t.median_ms:.3f}", f"{t.p99_ms:.3f}"] if t else ["-", "-"])
            + (
                [f"{cost.ratio:.3f}x ({cost.added_pct:+.1f}%)", cost.noise, "no target"]
                if cost
                else ["-"] * 3
            )
        )
    return rows


def grid_rows(run: Run) -> list[list[object]]:
    """The bare session.run, GET /livez, then one row per (configuration, clients)."""
    raw = run.raw
    rows: list[list[object]] = [
        ["session.run, batch 1 (in process)", "-", raw.reps, "-", f"{raw.median_ms:.3f}"]
        + [f"{raw.p99_ms:.3f}", f"{1e3 / raw.median_ms:,.0f}", "1", "-", "-", "-"]
    ]
    cells = [(f"GET /livez ({NO_SHADOWS.name})", 1, run.livez)]
    cells += [(c.name, clients, run.cells[c.name, clients]) for c in CONFIGS for clients in CLIENTS]
    for name, clients, cell in cells:
        t, wall = cell.timing, cell.wall_s or math.nan
        failed = ", ".join(f"{k}: {n}" for k, n in sorted(cell.outcomes.items()) if k != "200")
        rows.append(
            [name, clients, len(cell.latencies_ms), failed or "0"]
            + ([f"{t.median_ms:.3f}", f"{t.p99_ms:.3f}"] if t else ["-", "-"])
            + [f"{cell.throughput:,.0f}"]
            + [f"{cell.instances / cell.predict_calls:.1f}" if cell.predict_calls else "-"]
            + [" / ".join(f"{p:.2f}" for p in cell.round_p50_ms) or "-"]
            + [f"{cell.server_cpu_s / wall:.2f}", f"{cell.client_cpu_s / wall:.2f}"]
        )
    return rows


def server_rows(run: Run) -> list[list[object]]:
    """One row per configuration: its switches and what its server did."""
    rows = []
    for c in CONFIGS:
        s = run.servers[c.name]
        errors: Counter[str] = s["log_errors"]
        logged = f"{errors.total()}" + "".join(
            f"; {n} x `{message[:90].replace('|', '/')}`" for message, n in errors.most_common(2)
        )
        stopped = "yes" if s["port_freed"] else "**no: port still bound**"
        if s["stray_killed"]:
            stopped += f" ({s['stray_killed']} leftover processes killed)"
        counted = [f"{s[k]:,.0f}" for k in ("served", "write_errors", "shadows_skipped")]
        if c.bare:  # no metrics of its own
            counted = ["-"] * 3
        rows.append(
            [c.name, "on" if c.batching else "off", c.event_log_label]
            + [", ".join(DEFAULT_SHADOWS) if c.shadows else "none", counted[0]]
            + [f"{s['events']:,}" if c.event_log else "-", *counted[1:], logged, stopped]
        )
    return rows


def other_load(start: CpuSnapshot, end: CpuSnapshot, servers_cpu_s: float) -> float | None:
    """Cores used on average by everything but this process and its servers."""
    others = other_load_cores(start, end)
    if others is None:
        return None
    return max(others - servers_cpu_s / (end.wall_s - start.wall_s), 0.0)


def render(run: Run) -> str:
    """This benchmark's section of docs/benchmarks.md."""
    s, b = run.settings, run.budget
    primary, *shadows = run.model_tags.values()
    profile = "quick (smoke run: few requests, not for the record)" if run.quick else "full"
    load = "unknown (no /proc/stat)"
    if run.other_load_cores is not None:
        load = "processes other than this one, its servers and redis-server used "
        load += f"{run.other_load_cores:.2f} "
        load += "cores on average"
        if run.other_load_cores > BUSY_CORES:
            load += " -- **the machine was busy: numbers are not representative**; rerun idle"
    spread = [
        max(c.round_p50_ms) - min(c.round_p50_ms)
        for (_, clients), c in run.cells.items()
        if clients == 1 and len(c.round_p50_ms) > 1
    ]
    server_headers = (
        "configuration, batching, event log, shadow models, instances served, events written, "
        "event-log write errors, shadows skipped, server log errors, stopped and port freed"
    ).split(", ")
    grid_headers = (
        "configuration, clients, answered 200, not 200, p50 ms, p99 ms, req/s, mean batch, "
        "p50 by round ms, server cores, client cores"
    ).split(", ")
    transport_headers = (
        "configuration, event log, clients, measured in, answered 200, not 200, p50 ms, p99 ms, "
        "p50 / p50 with event log off, noise, status"
    ).split(", ")
    anchor_headers = ("server, clients, p50 ms, p99 ms, req/s, p50 alternated ms, not 200").split(
        ", "
    )
    redis = run.redis
    streams = "; ".join(f"{name} XLEN {n:,}" for name, n in redis["streams"].items())
    lines = [
        "## Service: HTTP /predict vs session.run",
        "",
        f"Generated by `{run.command}` (`make bench-service`), profile {profile}.",
        "",
        f"- Machine: {machine_summary()}",
        f"- Versions: python {platform.python_version()}, bentoml {bentoml.__version__}, "
        f"onnxruntime {ort.__version__} ({run.provider}), httpx {httpx.__version__}",
        f"- Date: {datetime.now(UTC).isoformat(timespec='seconds')}; wall time {run.wall_s:.0f} s",
        f"- Other load: {load}",
        f"- Models: primary {primary}; shadows {', '.join(shadows)}; "
        f"SHIFTWATCH_MAX_TOKENS={run.max_tokens} (the smallest positional limit)",
        f"- Request: {run.request}",
        f"- Servers: one `bentoml serve` process per configuration, side by side on {HOST}, "
        f"each with one worker and its own BENTOML_HOME (the model store linked in); "
        f"max_batch_size {s.max_batch_size}, max_latency_ms {s.max_latency_ms}, "
        f"inference_batch {s.inference_batch}; onnxruntime threads {s.intra_op_threads} "
        f"intra-op, {s.inter_op_threads} inter-op, in the servers and in session.run; "
        "the `bare server` (benchmarks/bare_server.py): the same OnnxClassifier over the "
        "primary's bundle, threads as above, in one async Starlette endpoint on uvicorn "
        f"{uvicorn.__version__} (its defaults, access log on), no BentoML, no batching, "
        "no shadows, no event log",
        "- Clients: asyncio in this process, one keep-alive HTTP/1.1 connection per concurrent "
        "caller (benchmarks/keepalive.py), each sending its next request once the last is "
        "answered; latency is measured by the client, so it includes the client's own time "
        "(client cores below; httpx's AsyncClient cost 1.4 ms of CPU per request here, this "
        "client 0.2 ms)",
        f"- Redis (the `redis transport` server's event log): redis-server {redis['version']} "
        f"on {HOST}, started and stopped by this run, append-only file (fsync every second, as "
        f"deployed), streams `{STREAM_PREFIX}:*` trimmed at MAXLEN ~{s.redis_max_len:,}; "
        f"during the timed rounds it used {redis['cpu_s']:.2f} CPU s in "
        f"{redis['measured_s']:.0f} s ({redis['cpu_s'] / redis['measured_s']:.3f} cores), "
        "on the same 2 cores as the servers and the client",
        f"- Per cell: {b.warmup_requests} untimed requests per server first; then up to "
        + "/".join(str(b.requests * REQUEST_SCALE[c]) for c in CLIENTS)
        + f" timed requests (1/8/32 clients) or {b.seconds:g} s, split over {b.rounds} "
        "interleaved rounds with the configurations' order rotating; session.run timed in "
        "the same rounds as the one-client cells",
        "",
        markdown_table(server_headers, server_rows(run)),
        "",
        "events written: prediction and label lines in the file segments (file), entries in the streams after the "
        f"server stopped (redis: {streams}). event-log write errors: the server's "
        "`shiftwatch_event_log_write_errors_total`, all reasons. instances served include "
        "the alternated one-client requests (Event transports, below) of the three servers "
        "that take part.",
        "",
        markdown_table(grid_headers, grid_rows(run)),
        "",
        "req/s: answers with status 200 per second. mean batch: instances per call of the "
        "service's predict function (BentoML's adaptive batches). server / client cores: CPU "
        "used by the server's processes / by this process, over the cell's wall time "
        "(redis-server's CPU is not in the redis transport's server cores).",
        "",
        "### Event transports",
        "",
        "The default deployment with each event transport, and with the event log off; same "
        "shadows and batching. A ratio above 1 is what the transport costs. At one client "
        "(the target) the three servers are alternated in short blocks: "
        f"{b.transport_cycles} cycles, each giving every server in turn (order rotating) one "
        f"untimed request and then {b.transport_block} timed ones back to back, so a drift in "
        "the machine's speed lands on all three within a fraction of a second; the grid's "
        "rounds, seconds long, drift by more than the 5% to be resolved (its one-client p50s "
        "above). The interval resamples the cycles: it covers this run's noise, not what "
        "differs between server processes started anew, which only a rerun shows. At 32 "
        "clients: the grid's cells.",
        "",
        markdown_table(transport_headers, transport_rows(run)),
        "",
        "### Against a bare onnxruntime server",
        "",
        "What a user could write without BentoML (`bare server`), next to shiftwatch without "
        "shadows and with the default ones: p50, p99 and throughput from the grid's cells; "
        "at one client also the p50 from the alternated blocks "
        f"({b.transport_cycles} cycles of {b.transport_block} requests to each of "
        f"{', '.join(c.name for c in ALTERNATED)} in turn), which the one-client targets use.",
        "",
        markdown_table(anchor_headers, anchor_rows(run)),
        "",
        "### Targets",
        "",
        markdown_table(["target", "measured", "status"], target_rows(run)),
    ]
    if spread:
        lines += [
            "",
            f"Round-to-round p50 spread at 1 client: up to {max(spread):.2f} ms; differences "
            "between configurations smaller than that are within this run's noise.",
        ]
    return "\n".join(lines) + "\n"


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
    run = Run(
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
    )
    markdown = render(run)
    print(markdown)
    write_section(out, SECTION, markdown)
    console.print(f"wrote section '{SECTION}' of {out}")


if __name__ == "__main__":
    typer.run(main)
