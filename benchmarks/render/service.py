"""The service benchmark's section: the servers, the grid of configurations x clients, the
event transports, the bare onnxruntime server, and DESIGN.md's service targets."""

from __future__ import annotations

import math
from collections import Counter

from benchmarks.live_service import HOST, Cell
from benchmarks.render.markdown import BUSY_CORES, markdown_table, verdict
from benchmarks.render.stages import stage_lines
from benchmarks.results import (
    ALTERNATED,
    ANCHOR,
    BARE,
    CLIENTS,
    CONFIGS,
    DEFAULT,
    DEFAULT_SHADOWS,
    NO_EVENT_LOG,
    NO_SHADOWS,
    REQUEST_SCALE,
    STREAM_PREFIX,
    TRANSPORT_SERVERS,
    TRANSPORTS,
    UNBATCHED,
    ServerConfig,
    ServiceRun,
)
from benchmarks.timing import Timing
from benchmarks.transport_cost import TransportCost, alternated_cost, rounds_cost

# DESIGN.md's service targets.
BARE_MS = 1.0  # p50 without shadows - the bare server's p50, one client
BARE_THROUGHPUT = 0.5  # throughput without shadows / the bare server's, 32 clients
SHADOWS_RATIO = 1.15  # p50 with the default shadows / p50 without, one client
BATCHING_SPEEDUP = 1.2  # batched / unbatched throughput, 32 clients
EVENT_LOG_PCT = 5.0  # % either event transport may add to p50, one client


def anchor_target_rows(run: ServiceRun) -> list[list[str]]:
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


def anchor_rows(run: ServiceRun) -> list[list[object]]:
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


def target_rows(run: ServiceRun) -> list[list[str]]:
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
    target = "no request lost or double-logged: instances served = events written"
    logged = [c for c in CONFIGS if c.event_log and not c.bare]
    counts = [
        (run.servers[c.name].get("served"), run.servers[c.name].get("events")) for c in logged
    ]
    if all(served is not None and events is not None for served, events in counts):
        unequal = [c.name for c, (a, b) in zip(logged, counts, strict=True) if a != b]
        measured = f"equal on {len(logged) - len(unequal)} of {len(logged)} servers"
        measured += f" (not on {', '.join(unequal)})" if unequal else ""
        rows.append([target, measured, "missed" if unequal else "met"])
    else:
        rows.append([target, "not counted", "-"])
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


def alternated_pair(run: ServiceRun, on: ServerConfig, off: ServerConfig) -> TransportCost | None:
    """`on` against `off` from the one-client alternated blocks."""
    blocks = run.transports.blocks_ms
    return alternated_cost(blocks[ALTERNATED.index(on)], blocks[ALTERNATED.index(off)])


def transport_cost(run: ServiceRun, config: ServerConfig, clients: int) -> TransportCost | None:
    """`config`'s event transport against the event log off: one client from the alternated
    blocks (the target's measure), more from the grid's cells."""
    if clients == 1:
        return alternated_pair(run, config, NO_EVENT_LOG)
    return rounds_cost(run.cells[config.name, clients], run.cells[NO_EVENT_LOG.name, clients])


def transport_rows(run: ServiceRun) -> list[list[object]]:
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


def grid_rows(run: ServiceRun) -> list[list[object]]:
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


def server_rows(run: ServiceRun) -> list[list[object]]:
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


def render(run: ServiceRun) -> str:
    """This benchmark's section of docs/benchmarks.md."""
    s, b, env = run.settings, run.budget, run.environment
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
        f"- Machine: {env.machine}",
        f"- Versions: python {env.python}, bentoml {env.versions['bentoml']}, "
        f"onnxruntime {env.versions['onnxruntime']} ({run.provider}), "
        f"httpx {env.versions['httpx']}",
        f"- Date: {env.date}; wall time {run.wall_s:.0f} s",
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
        f"{env.versions['uvicorn']} (its defaults, access log on), no BentoML, no batching, "
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
        "service's predict function (its adaptive batches, service/batcher.py). server / client cores: CPU "
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
        *stage_lines(run),
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
