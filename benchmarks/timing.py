"""Latency measurement, the measured GEMM peak, and the classifier's analytic FLOPs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch only for the inference benchmark's GEMM peak and FLOP count
    from training.model import ModelConfig


@dataclass(frozen=True)
class RepetitionBudget:
    """How long one benchmark cell runs: bounded by a count and by a time budget."""

    warmup: int  # untimed calls first (allocations, thread pools, caches)
    min_reps: int  # timed calls made even when one call overruns the time budget
    max_reps: int  # timed calls at most
    seconds: float  # no new timed call starts once this much time has been spent timing


@dataclass(frozen=True)
class Timing:
    """Wall-clock latencies of repeated calls, in milliseconds."""

    samples_ms: tuple[float, ...]

    @property
    def reps(self) -> int:
        return len(self.samples_ms)

    @property
    def median_ms(self) -> float:
        return float(np.median(self.samples_ms))

    @property
    def p99_ms(self) -> float:
        # Interpolated; with fewer than 100 samples it lies between the two slowest.
        return float(np.percentile(self.samples_ms, 99))


def time_calls(call: Callable[[], object], budget: RepetitionBudget) -> Timing:
    """Warm up, then time `call` until the repetition count or the time budget runs out."""
    for _ in range(budget.warmup):
        call()
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < budget.max_reps and (
        len(samples) < budget.min_reps or time.perf_counter() - started < budget.seconds
    ):
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1e3)
    return Timing(tuple(samples))


def time_interleaved(
    calls: dict[str, Callable[[], object]], budget: RepetitionBudget, rounds: int
) -> dict[str, Timing]:
    """Time several calls side by side: `rounds` rounds, each call once per round with a
    `rounds`-th of the budget, the order rotating, so a change in machine load (a noisy
    neighbour, a frequency step) lands on every call alike instead of on whichever ran then.
    """
    share = RepetitionBudget(
        warmup=budget.warmup,
        min_reps=max(1, -(-budget.min_reps // rounds)),
        max_reps=max(1, -(-budget.max_reps // rounds)),
        seconds=budget.seconds / rounds,
    )
    names = list(calls)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            samples[name] += time_calls(calls[name], share).samples_ms
    return {name: Timing(tuple(s)) for name, s in samples.items()}


def gemm_peak_gflops(threads: int, budget: RepetitionBudget, size: int = 1024) -> float:
    """float32 GFLOP/s of a (size x size) @ (size x size) torch matmul, from its median time.

    The same thread count as the engines, so "fraction of peak" compares like with like.
    """
    import torch

    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator) for _ in range(2))
    out = torch.empty(size, size)
    timing = time_calls(lambda: torch.matmul(a, b, out=out), budget)
    return 2 * size**3 / (timing.median_ms * 1e-3) / 1e9


def forward_flops(config: ModelConfig, batch: int, seq: int) -> int:
    """Multiply-adds x 2 of one forward pass; embedding lookups, norms and softmax ignored."""
    B, T, C, F, H = batch, seq, config.d_model, config.d_ff, config.n_heads
    dense = 2 * B * T * (3 * C * C + C * C + 2 * C * F)  # QKV, output projection, MLP
    attention = 2 * 2 * B * H * T * T * (C // H)  # q @ k^T and weights @ v
    head = 2 * B * C * config.num_classes
    return config.n_layers * (dense + attention) + head
