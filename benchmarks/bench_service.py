"""Service benchmark: HTTP /predict on real `bentoml serve` processes vs a bare session.run.

One run, one machine. Four server configurations run side by side on loopback, each
its own `bentoml serve` process started (and stopped) here: the default deployment
(adaptive batching, event log, shadow models), then each of those three turned off
alone. Every cell (configuration x concurrent clients) is split into interleaved
rounds, the configurations' order rotating each round, and the primary model's bare
`session.run` is timed in the same rounds as the one-client cells, so a change in
machine load hits every configuration alike. The table goes to stdout and to this
benchmark's section of docs/benchmarks.md.

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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

# Run as `python benchmarks/bench_service.py`: make `benchmarks` importable as under -m.
if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bentoml
import httpx
import onnxruntime as ort
import typer
from rich.console import Console

from benchmarks.inference_report import BUSY_CORES
from benchmarks.live_service import HOST, READY_TIMEOUT_S, Server, Slice, drive
from benchmarks.report import (
    CpuSnapshot,
    machine_summary,
    markdown_table,
    other_load_cores,
    write_section,
)
from benchmarks.timing import RepetitionBudget, Timing, time_calls
from exports.store import store_name
from service.event_log import SEGMENT_GLOB
from shiftwatch.bundle import ModelBundle, read_bundle
from shiftwatch.data import load_dataset
from shiftwatch.encoding import pad_batch
from shiftwatch.inference import OnnxClassifier, open_session
from shiftwatch.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[1]
SECTION = "bench_service"
CLIENTS = (1, 8, 32)
# DESIGN.md's service targets.
OVERHEAD_MS = 2.0  # HTTP p50 - session.run p50, one client
BATCHING_SPEEDUP = 1.2  # batched / unbatched throughput, 32 clients
EVENT_LOG_PCT = 5.0  # p50 with the event log / without, one client, in % added
REQUEST_SCALE = {1: 1, 8: 3, 32: 6}  # timed requests per cell, as multiples of --requests
console = Console(stderr=True)


@dataclass(frozen=True)
class LoadBudget:
    """How much load each cell gets: bounded by a request count and by time."""

    warmup_requests: int  # per server, untimed, from 8 clients, before any cell
    requests: int  # timed requests of a one-client cell (x REQUEST_SCALE with more clients)
    seconds: float  # no new request starts in a cell after this much of its time
    rounds: int  # each cell's requests and time are split over this many interleaved rounds
    raw: RepetitionBudget  # bare session.run, per round


# Full: 4 configurations x 3 levels x 12 s at most, ~3 minutes with start-up on 2 cores.
FULL = LoadBudget(200, 400, 12.0, 3, RepetitionBudget(20, 20, 1000, 1.0))
QUICK = LoadBudget(30, 60, 2.4, 2, RepetitionBudget(5, 5, 200, 0.2))  # ~60 s smoke run


@dataclass(frozen=True)
class ServerConfig:
    """One server configuration: the default deployment or one feature of it off."""

    name: str
    batching: bool
    event_log: bool
    shadows: bool


DEFAULT = ServerConfig("default", batching=True, event_log=True, shadows=True)
UNBATCHED = ServerConfig("batching off", batching=False, event_log=True, shadows=True)
NO_EVENT_LOG = ServerConfig("event log off", batching=True, event_log=False, shadows=True)
NO_SHADOWS = ServerConfig("no shadows", batching=True, event_log=True, shadows=False)
CONFIGS = (DEFAULT, UNBATCHED, NO_EVENT_LOG, NO_SHADOWS)


@dataclass
class Cell:
    """One configuration at one concurrency, pooled over rounds."""

    latencies_ms: list[float] = field(default_factory=list)  # answers with status 200
    outcomes: Counter[str] = field(default_factory=Counter)  # HTTP status or exception name
    round_p50_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    instances: float = 0.0  # predict calls' instances, from the server's batch-size histogram
    predict_calls: float = 0.0

    def add(self, load: Slice, server_cpu_s: float, instances: float, calls: float) -> None:
        self.latencies_ms += load.latencies_ms
        self.outcomes += load.outcomes
        if load.latencies_ms:
            self.round_p50_ms.append(Timing(tuple(load.latencies_ms)).median_ms)
        self.wall_s += load.wall_s
        self.client_cpu_s += load.client_cpu_s
        self.server_cpu_s += server_cpu_s
        self.instances += instances
        self.predict_calls += calls

    @property
    def timing(self) -> Timing | None:
        return Timing(tuple(self.latencies_ms)) if self.latencies_ms else None

    @property
    def throughput(self) -> float:
        """Answers with status 200 per second."""
        return len(self.latencies_ms) / self.wall_s if self.wall_s else 0.0


def stored_bundle(name: str) -> tuple[ModelBundle, str]:
    """The latest bundle of a variant in the model store (BENTOML_HOME), and its tag."""
    model = bentoml.models.get(f"{store_name(name)}:latest")
    return read_bundle(model.path), str(model.tag)


def request_sequence(seq_len: int) -> tuple[list[str], str, int]:
    """A fixed test-split sequence of `seq_len` tokens: tokens, domain, row in the split.

    The first row of exactly that length, else the first longer row cut to it.
    """
    test = load_dataset().split("test")
    lengths = test["tokens"].map(len)
    rows = list(test.index[lengths == seq_len]) or list(test.index[lengths > seq_len])
    if not rows:
        raise typer.BadParameter(f"no test sequence has {seq_len} tokens", param_hint="--seq-len")
    row = rows[0]
    return list(test.at[row, "tokens"])[:seq_len], str(test.at[row, "domain"]), int(row)


def server_env(
    config: ServerConfig, settings: ServiceSettings, max_tokens: int, events: Path
) -> dict[str, str]:
    """Every setting the benchmark depends on, explicit (nothing left to the caller's env)."""
    shadows = ServiceSettings.model_fields["shadow_models"].default_factory()
    return {
        "BENTOML_DO_NOT_TRACK": "true",
        "DO_NOT_TRACK": "1",
        "EVIDENTLY_DISABLE_TELEMETRY": "1",
        "SHIFTWATCH_PRIMARY_MODEL": settings.primary_model,
        "SHIFTWATCH_SHADOW_MODELS": ",".join(shadows) if config.shadows else "",
        "SHIFTWATCH_BATCHING": str(config.batching).lower(),
        "SHIFTWATCH_EVENT_LOG_ENABLED": str(config.event_log).lower(),
        "SHIFTWATCH_EVENT_LOG_DIR": str(events),
        "SHIFTWATCH_MAX_TOKENS": str(max_tokens),
        "SHIFTWATCH_MAX_BATCH_SIZE": str(settings.max_batch_size),
        "SHIFTWATCH_MAX_LATENCY_MS": str(settings.max_latency_ms),
        "SHIFTWATCH_INFERENCE_BATCH": str(settings.inference_batch),
        "SHIFTWATCH_INTRA_OP_THREADS": str(settings.intra_op_threads),
        "SHIFTWATCH_INTER_OP_THREADS": str(settings.inter_op_threads),
        "SHIFTWATCH_PREFER_GPU": str(settings.prefer_gpu).lower(),
    }


def warm_up(server: Server, body: bytes, primary: str, requests: int) -> None:
    """Check one answer is the primary's, then send untimed requests from 8 clients."""
    answer = httpx.post(
        f"{server.url}/predict",
        content=body,
        headers={"content-type": "application/json"},
        timeout=30,
        trust_env=False,
    )
    if answer.status_code != 200 or answer.json()[0].get("model") != primary:
        raise RuntimeError(f"server '{server.name}' answered {answer.status_code}: {answer.text}")
    drive(server.url, body, 8, requests, 60.0)


def measure(
    servers: dict[str, Server], body: bytes, budget: LoadBudget, raw_call
) -> tuple[dict[tuple[str, int], Cell], Timing]:
    """Every cell in interleaved rounds; the bare session.run in the one-client rounds."""
    cells = {(c.name, clients): Cell() for c in CONFIGS for clients in CLIENTS}
    raw: list[float] = []
    for clients in CLIENTS:
        requests = math.ceil(budget.requests * REQUEST_SCALE[clients] / budget.rounds)
        for r in range(budget.rounds):
            if clients == 1:
                raw += time_calls(raw_call, budget.raw).samples_ms
            for config in CONFIGS[r % len(CONFIGS) :] + CONFIGS[: r % len(CONFIGS)]:
                server = servers[config.name]
                instances = server.metric("shiftwatch_inference_batch_size_sum")
                calls = server.metric("shiftwatch_inference_batch_size_count")
                cpu = server.cpu_seconds()
                load = drive(server.url, body, clients, requests, budget.seconds / budget.rounds)
                cells[config.name, clients].add(
                    load,
                    server.cpu_seconds() - cpu,
                    server.metric("shiftwatch_inference_batch_size_sum") - instances,
                    server.metric("shiftwatch_inference_batch_size_count") - calls,
                )
            p50s = ", ".join(
                f"{c.name} {cells[c.name, clients].round_p50_ms[-1:] or ['-']}" for c in CONFIGS
            )
            console.print(f"{clients:>2} clients, round {r + 1}/{budget.rounds}: p50 ms {p50s}")
    return cells, Timing(tuple(raw))


@dataclass(frozen=True)
class Run:
    """Everything one benchmark run measured, ready to be written up."""

    command: str  # how this run was started, flags included
    quick: bool
    budget: LoadBudget
    settings: ServiceSettings  # the caller's environment: batching numbers and threads
    max_tokens: int
    model_tags: dict[str, str]  # variant -> store tag; the primary first
    provider: str  # onnxruntime execution provider of the bare session
    tokens: int
    domain: str
    row: int  # of the test split
    body_bytes: int
    raw: Timing  # bare session.run of the primary, batch 1
    cells: dict[tuple[str, int], Cell]
    served: dict[str, float]  # instances each server answered, warm-up included
    events_written: dict[str, int]  # event-log lines each server left
    write_errors: dict[str, float]
    log_errors: dict[str, int]
    stray_killed: dict[str, int]  # processes still alive after their server stopped
    port_freed: dict[str, bool]
    other_load_cores: float | None  # cores used by everything but this process and its servers
    wall_s: float


def verdict(value: float, target: float, at_most: bool, unit: str) -> str:
    """'met (margin ...)' or 'missed by ...'."""
    margin = target - value if at_most else value - target
    return f"met (margin {margin:.2f}{unit})" if margin >= 0 else f"missed by {-margin:.2f}{unit}"


def target_rows(run: Run) -> list[list[str]]:
    """DESIGN.md's service targets and what shadows cost: [target, measured, status]."""

    def p50(config: ServerConfig, clients: int) -> float | None:
        timing = run.cells[config.name, clients].timing
        return timing.median_ms if timing else None

    rows = []
    for config, note in ((NO_SHADOWS, "no shadows"), (DEFAULT, "default, for reference")):
        http = p50(config, 1)
        target = f"HTTP p50 - session.run p50 <= {OVERHEAD_MS} ms (1 client, {note})"
        if http is None:
            rows.append([target, "no answers", "-"])
            continue
        overhead = http - run.raw.median_ms
        rows.append(
            [
                target,
                f"{overhead:.2f} ms ({http:.2f} - {run.raw.median_ms:.2f})",
                verdict(overhead, OVERHEAD_MS, True, " ms"),
            ]
        )
    batched, unbatched = (run.cells[c.name, 32].throughput for c in (DEFAULT, UNBATCHED))
    target = f"batching >= {BATCHING_SPEEDUP}x unbatched throughput (32 clients)"
    if unbatched:
        speedup = batched / unbatched
        rows.append(
            [
                target,
                f"{speedup:.2f}x ({batched:,.0f} vs {unbatched:,.0f} req/s)",
                verdict(speedup, BATCHING_SPEEDUP, False, "x"),
            ]
        )
    else:
        rows.append([target, "no unbatched answers", "-"])
    with_log, without_log = p50(DEFAULT, 1), p50(NO_EVENT_LOG, 1)
    target = f"event log adds <= {EVENT_LOG_PCT:g}% to p50 (1 client)"
    if with_log and without_log:
        added = 100 * (with_log / without_log - 1)
        rows.append(
            [
                target,
                f"{added:+.1f}% ({with_log:.2f} vs {without_log:.2f} ms)",
                verdict(added, EVENT_LOG_PCT, True, " points"),
            ]
        )
    else:
        rows.append([target, "no answers", "-"])
    for clients in (1, 32):
        shadowed, bare = p50(DEFAULT, clients), p50(NO_SHADOWS, clients)
        target = f"what shadows cost, p50 ({clients} client{'s' if clients > 1 else ''})"
        if shadowed and bare:
            ratio = run.cells[DEFAULT.name, clients].throughput / (
                run.cells[NO_SHADOWS.name, clients].throughput or math.nan
            )
            rows.append(
                [
                    target,
                    f"{shadowed - bare:+.2f} ms ({100 * (shadowed / bare - 1):+.0f}%: "
                    f"{shadowed:.2f} vs {bare:.2f} ms); throughput {ratio:.2f}x",
                    "no target",
                ]
            )
        else:
            rows.append([target, "no answers", "-"])
    return rows


def grid_rows(run: Run) -> list[list[object]]:
    """session.run, then one row per (configuration, clients)."""
    raw = run.raw
    rows: list[list[object]] = [
        ["session.run (batch 1, in process)", "-", raw.reps, "-", f"{raw.median_ms:.3f}"]
        + [f"{raw.p99_ms:.3f}", f"{1e3 / raw.median_ms:,.0f}", "1", "-", "-", "-"]
    ]
    for config in CONFIGS:
        for clients in CLIENTS:
            cell = run.cells[config.name, clients]
            timing = cell.timing
            failed = {k: v for k, v in cell.outcomes.items() if k != "200"}
            wall = cell.wall_s or math.nan
            rows.append(
                [
                    config.name,
                    clients,
                    len(cell.latencies_ms),
                    ", ".join(f"{n} x{k}" for k, n in sorted(failed.items())) or "0",
                    f"{timing.median_ms:.3f}" if timing else "-",
                    f"{timing.p99_ms:.3f}" if timing else "-",
                    f"{cell.throughput:,.0f}",
                    f"{cell.instances / cell.predict_calls:.1f}" if cell.predict_calls else "-",
                    " / ".join(f"{p:.2f}" for p in cell.round_p50_ms) or "-",
                    f"{cell.server_cpu_s / wall:.2f}",
                    f"{cell.client_cpu_s / wall:.2f}",
                ]
            )
    return rows


def config_rows(run: Run) -> list[list[object]]:
    shadows = ", ".join(list(run.model_tags)[1:])
    rows = []
    for c in CONFIGS:
        rows.append(
            [
                c.name,
                "on" if c.batching else "off",
                "on" if c.event_log else "off",
                shadows if c.shadows else "none",
                f"{run.served[c.name]:,.0f}",
                f"{run.events_written[c.name]:,}" if c.event_log else "-",
                f"{run.write_errors[c.name]:.0f}",
                run.log_errors[c.name],
                ("yes" if run.port_freed[c.name] else "**no: port still bound**")
                + (f" ({run.stray_killed[c.name]} killed)" if run.stray_killed[c.name] else ""),
            ]
        )
    return rows


def other_load_text(cores: float | None) -> str:
    if cores is None:
        return "unknown (no /proc/stat)"
    text = f"processes other than this one and its servers used {cores:.2f} cores on average"
    if cores > BUSY_CORES:
        text += " -- **the machine was busy: numbers are not representative**; rerun on an idle one"
    return text


def render(run: Run) -> str:
    """This benchmark's section of docs/benchmarks.md."""
    s, b = run.settings, run.budget
    primary, *shadows = run.model_tags
    profile = "quick (smoke run: few requests, not for the record)" if run.quick else "full"
    requests = "/".join(str(b.requests * REQUEST_SCALE[c]) for c in CLIENTS)
    lines = [
        "## Service: HTTP /predict vs session.run",
        "",
        f"Generated by `{run.command}` (`make bench-service`), profile {profile}.",
        "",
        f"- Machine: {machine_summary()}",
        f"- Versions: python {platform.python_version()}, bentoml {bentoml.__version__}, "
        f"onnxruntime {ort.__version__} ({run.provider}), httpx {httpx.__version__}",
        f"- Date: {datetime.now(UTC).isoformat(timespec='seconds')}; wall time {run.wall_s:.0f} s",
        f"- Other load: {other_load_text(run.other_load_cores)}",
        f"- Models: primary {run.model_tags[primary]}; shadows "
        + ", ".join(run.model_tags[n] for n in shadows)
        + f"; SHIFTWATCH_MAX_TOKENS={run.max_tokens} (the smallest positional limit)",
        f"- Request: one instance of {run.tokens} tokens (test split row {run.row}, domain "
        f"{run.domain}), {run.body_bytes} bytes of JSON",
        f"- Servers: one `bentoml serve` process per configuration, side by side on {HOST}, "
        f"one worker each; max_batch_size {s.max_batch_size}, max_latency_ms "
        f"{s.max_latency_ms}, inference_batch {s.inference_batch}, onnxruntime threads "
        f"{s.intra_op_threads} intra-op / {s.inter_op_threads} inter-op (session.run alike)",
        "- Clients: asyncio + httpx in this process, one client (one keep-alive connection) "
        "per concurrent caller, each sending its next request when the last is answered; "
        "latency is measured by the client, so it includes the client's own time",
        f"- Per cell: {b.warmup_requests} untimed requests per server first; then up to "
        f"{requests} timed requests (1/8/32 clients) or {b.seconds:g} s, split over "
        f"{b.rounds} interleaved rounds with the configurations' order rotating; session.run "
        f"timed in the same rounds as the one-client cells",
        "",
        markdown_table(
            [
                "configuration",
                "batching",
                "event log",
                "shadow models",
                "instances served",
                "events written",
                "event-log write errors",
                "server log errors",
                "stopped, port freed",
            ],
            config_rows(run),
        ),
        "",
        markdown_table(
            [
                "configuration",
                "clients",
                "answered",
                "not 200",
                "p50 ms",
                "p99 ms",
                "req/s",
                "mean batch",
                "p50 by round ms",
                "server cores",
                "client cores",
            ],
            grid_rows(run),
        ),
        "",
        "mean batch: instances per call of the predict function (BentoML's adaptive batches); "
        "server and client cores: CPU used by the server's processes and by this process, "
        "over the cell's wall time.",
        "",
        "### Targets",
        "",
        markdown_table(["target", "measured", "status"], target_rows(run)),
    ]
    spread = [
        max(c.round_p50_ms) - min(c.round_p50_ms)
        for (_, clients), c in run.cells.items()
        if clients == 1 and len(c.round_p50_ms) > 1
    ]
    if spread:
        lines += [
            "",
            f"Round-to-round p50 spread at 1 client: up to {max(spread):.2f} ms; differences "
            "between configurations smaller than that are within this run's noise.",
        ]
    return "\n".join(lines) + "\n"


def other_load(start: CpuSnapshot, end: CpuSnapshot, servers_cpu_s: float) -> float | None:
    """Cores used on average by everything but this process and its servers."""
    own = other_load_cores(start, end)
    if own is None:
        return None
    return max(own - servers_cpu_s / (end.wall_s - start.wall_s), 0.0)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through `finally`, which stops the servers


def main(
    quick: Annotated[bool, typer.Option("--quick", help="~60 s smoke run: few requests.")] = False,
    requests: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Timed requests of a one-client cell (x3 at 8 clients, x6 at 32); "
            "default 400, 60 with --quick. Each cell also stops at its time limit.",
        ),
    ] = None,
    seq_len: Annotated[int, typer.Option(min=1, help="Tokens in the request's sequence.")] = 32,
    out: Annotated[Path, typer.Option(help="Report file.")] = ROOT / "docs" / "benchmarks.md",
) -> None:
    """Time HTTP /predict on four server configurations against session.run; write the report."""
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    wall_started = time.perf_counter()
    budget = QUICK if quick else FULL
    budget = replace(budget, requests=requests or budget.requests)
    settings = ServiceSettings()  # batching numbers and threads: the caller's environment
    shadows = ServiceSettings.model_fields["shadow_models"].default_factory()
    bundles = {
        name: stored_bundle(name) for name in dict.fromkeys([settings.primary_model, *shadows])
    }
    max_tokens = min(settings.max_tokens, *(b.meta.max_positions for b, _ in bundles.values()))
    if seq_len > max_tokens:
        raise typer.BadParameter(f"over the models' limit {max_tokens}", param_hint="--seq-len")
    tokens, domain, row = request_sequence(seq_len)
    body = json.dumps({"instances": [{"tokens": tokens, "domain": domain}]}).encode()
    primary = bundles[settings.primary_model][0]
    session = open_session(
        primary.model_path,
        settings.intra_op_threads,
        settings.inter_op_threads,
        settings.prefer_gpu,
    )
    ids, mask = pad_batch([primary.vocab.encode(tokens)])
    classifier = OnnxClassifier(session, primary.meta.max_positions)
    models_dir = primary.path.parents[1]  # <store>/models/<name>/<version>

    servers: dict[str, Server] = {}
    stopped: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="bench_service_") as work:
        try:
            for config in CONFIGS:
                workdir = Path(work) / config.name.replace(" ", "_")
                env = server_env(config, settings, max_tokens, workdir / "events")
                servers[config.name] = Server.start(config.name, env, workdir, models_dir)
            console.print(f"starting {len(servers)} servers on loopback")
            deadline = time.monotonic() + READY_TIMEOUT_S
            for server in servers.values():
                server.wait_ready(deadline)
                warm_up(server, body, settings.primary_model, budget.warmup_requests)
            started = CpuSnapshot.now()
            servers_cpu = sum(s.cpu_seconds() for s in servers.values())
            cells, raw = measure(servers, body, budget, lambda: classifier.run(ids, mask))
            ended = CpuSnapshot.now()
            servers_cpu = sum(s.cpu_seconds() for s in servers.values()) - servers_cpu
            served = {
                n: s.metric("shiftwatch_inference_batch_size_sum") for n, s in servers.items()
            }
            write_errors = {
                n: s.metric("shiftwatch_event_log_write_errors_total") for n, s in servers.items()
            }
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan one
            for name, server in servers.items():
                stopped[name] = server.stop()
            signal.signal(signal.SIGINT, signal.default_int_handler)
        events = {
            c.name: sum(
                len(p.read_text().splitlines())
                for p in (Path(work) / c.name.replace(" ", "_") / "events").glob(SEGMENT_GLOB)
            )
            for c in CONFIGS
        }
        log_errors = {n: s.log_errors() for n, s in servers.items()}
        for name, server in servers.items():
            if log_errors[name]:
                console.print(f"[yellow]server '{name}' logged errors:[/]\n{server.log_tail()}")
    run = Run(
        command=" ".join(["python -m benchmarks.bench_service", *sys.argv[1:]]),
        quick=quick,
        budget=budget,
        settings=settings,
        max_tokens=max_tokens,
        model_tags={name: tag for name, (_, tag) in bundles.items()},
        provider=session.get_providers()[0],
        tokens=len(tokens),
        domain=domain,
        row=row,
        body_bytes=len(body),
        raw=raw,
        cells=cells,
        served=served,
        events_written=events,
        write_errors=write_errors,
        log_errors=log_errors,
        stray_killed={n: s.stray_killed for n, s in servers.items()},
        port_freed=stopped,
        other_load_cores=other_load(started, ended, servers_cpu),
        wall_s=time.perf_counter() - wall_started,
    )
    markdown = render(run)
    print(markdown)
    write_section(out, SECTION, markdown)
    console.print(f"wrote section '{SECTION}' of {out}")


if __name__ == "__main__":
    typer.run(main)
