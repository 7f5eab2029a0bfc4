"""The inference benchmark's section: grid table, DESIGN.md targets, where ORT's time goes,
the bundle's recorded int8 accuracy."""

from __future__ import annotations

from benchmarks.ort_profile import MATMUL_OPS, OpProfile
from benchmarks.render.markdown import describe_load, markdown_table, project_path, verdict
from benchmarks.results import FP32, INT8, TARGET_CELL, TORCH, InferenceRun
from benchmarks.timing import Timing, forward_flops
from shiftwatch.inference import GRAPH_OPTIMIZATION

ORT_TIME_TARGET = 0.5  # ORT fp32 median time <= this x torch's
INT8_SPEEDUP_TARGET = 1.3  # fp32 median time / int8 median time >= this
INT8_ACCURACY_TARGET = 0.5  # |int8 - fp32 accuracy| <= this many points on every eval set
INT8_AGREEMENT_TARGET = 99.5  # % of every eval set where int8 and fp32 argmax agree


def target_rows(timings: dict[tuple[int, int, str], Timing], accuracy: dict | None) -> list:
    """DESIGN.md's onnxruntime and int8 targets: [target, measured value, met/missed]."""
    batch, seq = TARGET_CELL
    where = f"(batch {batch}, seq {seq})"
    if (batch, seq, TORCH) in timings:
        torch_ms, fp32_ms, int8_ms = (timings[batch, seq, e].median_ms for e in (TORCH, FP32, INT8))
        ratio, speedup = fp32_ms / torch_ms, fp32_ms / int8_ms
        rows = [
            [
                f"ORT fp32 <= {ORT_TIME_TARGET}x torch time {where}",
                f"{ratio:.3g}x",
                verdict(ratio, ORT_TIME_TARGET, True, "x"),
            ],
            [
                f"int8 >= {INT8_SPEEDUP_TARGET}x faster than fp32 {where}",
                f"{speedup:.2f}x",
                verdict(speedup, INT8_SPEEDUP_TARGET, False, "x"),
            ],
        ]
    else:
        rows = [[f"ORT and int8 speed {where}", "not measured (over max_positions)", "-"]]
    if accuracy is None:
        return rows + [
            ["int8 accuracy change and argmax agreement", "no bundle with int8 yet", "-"]
        ]
    worst = max(accuracy, key=lambda s: abs(accuracy[s]["delta_points"]))
    change = abs(accuracy[worst]["delta_points"])
    least = min(accuracy, key=lambda s: accuracy[s]["argmax_agreement"])
    agreement = 100 * accuracy[least]["argmax_agreement"]
    return rows + [
        [
            f"int8 accuracy change <= {INT8_ACCURACY_TARGET} points (every eval set)",
            f"{change:.2f} points ({worst})",
            verdict(change, INT8_ACCURACY_TARGET, True, " points"),
        ],
        [
            f"int8 argmax agreement >= {INT8_AGREEMENT_TARGET}% (every eval set)",
            f"{agreement:.1f}% ({least})",
            verdict(agreement, INT8_AGREEMENT_TARGET, False, " points"),
        ],
    ]


def grid_rows(m: InferenceRun) -> list[list[object]]:
    """One row per (seq, batch, engine), with its ratios to torch and to fp32."""
    rows = []
    for (batch, seq, name), timing in m.timings.items():
        median_s = timing.median_ms / 1e3
        gflops = forward_flops(m.config, batch, seq) / median_s / 1e9
        vs_torch = timing.median_ms / m.timings[batch, seq, TORCH].median_ms
        speedup = m.timings[batch, seq, FP32].median_ms / timing.median_ms
        rows.append(
            [
                name,
                batch,
                seq,
                timing.reps,
                f"{timing.median_ms:.3f}",
                f"{timing.p99_ms:.3f}",
                f"{batch / median_s:,.0f}",
                f"{gflops:.2f}",
                f"{100 * gflops / m.gemm_peak_gflops:.1f}%",
                "-" if name == TORCH else f"{vs_torch:.3g}x",
                f"{speedup:.2f}x" if name == INT8 else "-",
            ]
        )
    return rows


def op_profile_lines(profiles: dict[str, OpProfile], top: int = 12) -> list[str]:
    """What bounds the target cell: ORT's kernel time by operator, fp32 next to int8."""
    fp32, int8 = profiles[FP32], profiles[INT8]
    ops = sorted(
        set(fp32.us_per_run) | set(int8.us_per_run),
        key=lambda op: -fp32.us_per_run.get(op, 0) - int8.us_per_run.get(op, 0),
    )

    def row(label: str, group: list[str]) -> list[object]:
        cells: list[object] = [label]
        for p in (fp32, int8):
            t = sum(p.us_per_run.get(op, 0.0) for op in group)
            cells += [sum(p.nodes.get(op, 0) for op in group), f"{t:.1f}"]
            cells.append(f"{100 * t / p.total_us:.1f}%")
        return cells

    rows = [row(op, [op]) for op in ops[:top]]
    if ops[top:]:
        rows.append(row(f"{len(ops[top:])} other operators", ops[top:]))
    matmul = fp32.share(MATMUL_OPS)
    batch, seq = TARGET_CELL
    headers = [
        "operator",
        "fp32 nodes",
        "fp32 us/run",
        "fp32 share",
        "int8 nodes",
        "int8 us/run",
        "int8 share",
    ]
    return [
        "",
        f"### Where ORT's time goes at batch {batch}, seq {seq}",
        "",
        "Kernel time per run by operator type, from onnxruntime's profiler (profiling adds "
        "per-node overhead: the shares matter, not the absolute times).",
        "",
        markdown_table(headers, rows),
        "",
        f"Matrix multiplications (plain, fused or quantised) are {100 * matmul:.0f}% of fp32 "
        f"kernel time and {100 * int8.share(MATMUL_OPS):.0f}% of int8's; the rest is "
        "the fused attention (MultiHeadAttention, one node per layer), elementwise (bias and "
        "residual Adds), layout (Reshape, Split) and normalisation operators.",
    ]


def render(m: InferenceRun) -> str:
    """This benchmark's section of docs/benchmarks.md."""
    c, b, env, accuracy = m.config, m.budget, m.environment, m.int8_accuracy
    profile = "quick (smoke run: few repetitions, not for the record)" if m.quick else "full"
    lines = [
        "## Inference: torch eager vs onnxruntime fp32 vs int8",
        "",
        f"Generated by `{m.command}` (`make bench-inference`), profile {profile}.",
        "",
        f"- Machine: {env.machine}",
        f"- Threads: {m.threads} (torch.set_num_threads; ORT intra-op, inter-op 1); "
        f"OMP_WAIT_POLICY {env.omp_wait_policy}",
        f"- Versions: python {env.python}, torch {env.versions['torch']}, "
        f"onnxruntime {env.versions['onnxruntime']} ({GRAPH_OPTIMIZATION})",
        f"- Date: {env.date}; wall time {m.wall_s:.0f} s",
        f"- Other load: {describe_load(m.other_load_cores)}",
        f"- Model: {m.variant} from {project_path(m.run_dir)} ({c.positional} positions, {c.attention} "
        f"attention), d_model {c.d_model}, {c.n_layers} layers, {c.n_heads} heads, d_ff {c.d_ff}, "
        f"max_positions {c.max_positions}; exported afresh to fp32 and dynamic int8 ONNX",
        f"- Per cell and engine: up to {b.max_reps} timed calls or {b.seconds} s (at least "
        f"{b.min_reps}), split over {m.rounds} rounds in which the engines alternate, order "
        f"rotating, each round after {b.warmup} warm-up calls; random ids, full attention mask",
        f"- GEMM peak: {m.gemm_peak_gflops:.1f} GFLOP/s (torch float32 1024x1024 matmul, "
        f"median, {m.threads} threads)",
    ]
    if m.skipped_lengths:
        lines.append(
            f"- Skipped: seq {', '.join(map(str, m.skipped_lengths))} "
            f"(over the run's max_positions {c.max_positions})"
        )
    headers = [
        "engine",
        "batch",
        "seq",
        "reps",
        "median ms",
        "p99 ms",
        "seq/s",
        "GFLOP/s",
        "of peak",
        "time vs torch",
        "int8 speed-up",
    ]
    lines += [
        "",
        markdown_table(headers, grid_rows(m)),
        "",
        "GFLOP/s: analytic forward FLOPs (QKV, projection, MLP, attention, head; embeddings "
        "ignored) / median time; int8 counts the same operations against the float32 peak.",
        "",
        "### Targets",
        "",
        markdown_table(["target", "measured", "status"], target_rows(m.timings, accuracy)),
        "",
        *op_profile_lines(m.op_profiles),
        "",
        f"### int8 accuracy: {m.int8_source}",
    ]
    if accuracy is not None:
        rows = [
            [
                name,
                f"{r['fp32_accuracy']:.3f}",
                f"{r['int8_accuracy']:.3f}",
                f"{r['delta_points']:+.2f}",
                f"{100 * r['argmax_agreement']:.1f}%",
            ]
            for name, r in accuracy.items()
        ]
        headers = ["eval set", "fp32 accuracy", "int8 accuracy", "change (points)", "agreement"]
        lines += ["", markdown_table(headers, rows)]
    return "\n".join(lines) + "\n"
