"""Where onnxruntime's time goes: kernel time per operator type, from its own profiler.

Profiling adds per-node overhead, so absolute times run above the timed benchmark's;
the shares are what this is for (which operators bound a missed target).
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shiftwatch.inference import OUTPUT_NAMES, open_session

# Operators whose work is matrix multiplication (int8 ones included).
MATMUL_OPS = frozenset(
    {
        "MatMul",
        "Gemm",
        "FusedMatMul",
        "MatMulInteger",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
    }
)


WARMUP_RUNS = 10  # the first runs allocate buffers and pick kernels


@dataclass(frozen=True)
class OpProfile:
    """Kernel microseconds per run and nodes per run, by operator type."""

    us_per_run: dict[str, float]
    nodes: dict[str, int]

    @property
    def total_us(self) -> float:
        return sum(self.us_per_run.values())

    def share(self, ops: set[str] | frozenset[str]) -> float:
        """Fraction of kernel time spent in `ops`."""
        return sum(t for op, t in self.us_per_run.items() if op in ops) / self.total_us


def profile_ops(
    model_path: Path, threads: int, ids: np.ndarray, mask: np.ndarray, runs: int
) -> OpProfile:
    """Kernel time of `runs` runs under ORT's profiler, after WARMUP_RUNS that do not count."""
    with tempfile.TemporaryDirectory(prefix="ort_profile_") as folder:
        # The serving session's own options (threads, optimisation, execution mode), profiled.
        session = open_session(
            model_path, threads, prefer_gpu=False, profile_prefix=Path(folder) / "profile"
        )
        for _ in range(WARMUP_RUNS + runs):
            session.run(list(OUTPUT_NAMES), {"input_ids": ids, "attention_mask": mask})
        events = json.loads(Path(session.end_profiling()).read_text())
    run_starts = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    counted_from = run_starts[WARMUP_RUNS]
    time_us, count = Counter(), Counter()
    for event in events:
        if (
            event.get("cat") == "Node"
            and event["name"].endswith("_kernel_time")
            and event["ts"] >= counted_from
        ):
            time_us[event["args"]["op_name"]] += event["dur"]
            count[event["args"]["op_name"]] += 1
    return OpProfile(
        {op: t / runs for op, t in time_us.items()},
        {op: round(n / runs) for op, n in count.items()},
    )
